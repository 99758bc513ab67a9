"""The transport kit: machinery every backend needs, written once.

* :mod:`~aq.transport.kit.retry`: waits that grow between attempts to reach a
  server (:class:`ReconnectDelay`), and running an operation again through an
  outage until a deadline (:func:`retry_until`);
* :mod:`~aq.transport.kit.consumer`: a delivery settled at most once
  (:class:`OnceDelivery`) and a consumer that buffers deliveries and hands them
  out one at a time (:class:`BufferedConsumer`); what a backend may use only
  while connected (:func:`connected`);
* :mod:`~aq.transport.kit.turns`: doing the work asked for during one turn of
  the event loop in one go on the next (:class:`LoopTurn`), and sharing one
  batch's outcome among its callers (:func:`complete`);
* :mod:`~aq.transport.kit.options`: aq's options in a broker URL's query
  string, those common to every transport declared once (:class:`CommonSettings`),
  and a broker URL fit to show, without its password (:func:`redact_url`,
  :func:`url_title`).

A backend built on these fills in only what its server does differently.
"""

from aq.transport.kit.consumer import BufferedConsumer, OnceDelivery, connected
from aq.transport.kit.options import CommonSettings, read_options, redact_url, url_title
from aq.transport.kit.retry import ReconnectDelay, retry_until
from aq.transport.kit.turns import LoopTurn, complete

__all__ = [
    "BufferedConsumer",
    "CommonSettings",
    "LoopTurn",
    "OnceDelivery",
    "ReconnectDelay",
    "complete",
    "connected",
    "read_options",
    "redact_url",
    "url_title",
    "retry_until",
]
