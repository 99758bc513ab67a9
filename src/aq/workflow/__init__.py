"""Workflows: chains, groups, chords, maps and callbacks, carried on by the workers.

The public names are exported by :mod:`aq` (``aq.chain``, ``aq.group``,
``aq.chord``, ``aq.Signature``, ``aq.GroupHandle``, ``aq.Failure``); the parts:
:mod:`~aq.workflow.canvas` (the typed values), :mod:`~aq.workflow.items`
(a map's members), :mod:`~aq.workflow.wire` (their
JSON form on the wire), :mod:`~aq.workflow.steps` (what starts next),
:mod:`~aq.workflow.driver` (publishing and joining), :mod:`~aq.workflow.launch`
(sending from a producer), :mod:`~aq.workflow.advance` (carrying on in a
worker) and :mod:`~aq.workflow.handles` (the handle of a group).
"""
