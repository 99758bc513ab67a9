"""The RabbitMQ backend (``amqp://``, ``amqps://``): transport and admin; needs
``aq-tasks[amqp]``. It keeps no state by key: give a broker that needs a store
one with ``aq.Broker(store="redis://...")``.

Inside the package every module depends on :mod:`.context` (the connection,
settings, names, declarations and confirmed publishing), never on the
transport: ``transport`` → ``consumer`` → ``delivery``; ``transport`` →
``inbox``, ``admin``; all of them → ``context`` → ``declare``, ``errors``,
``settings``, ``topology``.
"""

from aq.transport.amqp.transport import AmqpTransport

__all__ = ["AmqpTransport"]
