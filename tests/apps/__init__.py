"""Small aq apps that the command-line tests start as worker processes."""
