"""Seeing what the cluster does: events, task status, inspect and control, metrics.

- :mod:`aq.monitor.wire`: the event batch format (protocol: pure functions).
- :mod:`aq.monitor.emitter`: buffers events and sends them in batches, never
  slowing the code that emits them.
- :mod:`aq.monitor.watch`: the hooks a worker calls as a task moves through
  its life, and the sinks behind them (events, status, metrics).
- :mod:`aq.monitor.status`: a task's state kept in the store, and reading it.
- :mod:`aq.monitor.inspect`: asking live workers questions and giving them
  commands over the control channel, answers coming back to the reply inbox.
- :mod:`aq.monitor.metrics`: Prometheus metrics and the health endpoint.
- :mod:`aq.monitor.top`: the terminal views (``aq events``, ``aq top``).
"""
