"""The RabbitMQ transport (``amqp://``, ``amqps://``); needs ``aq-tasks[amqp]``."""

from aq.transport.amqp.transport import AmqpTransport

__all__ = ["AmqpTransport"]
