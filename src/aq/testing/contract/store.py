"""The store contract: what every :class:`~aq.transport.Store` must keep, and refuse.

:class:`StoreContract` is a base class of pytest tests of values with expiry,
set-if-absent, membership sets, GCRA rates, expiring slots, and leases with
fencing tokens, as the :class:`~aq.transport.Store` docstrings specify them. Tests of expiry wait
past a short time to live (:attr:`StoreContract.short_ttl`): there, time itself
is what is tested.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from aq.transport import Lease, SlotTurn, Store

__all__ = ["StoreContract"]


class StoreContract:
    """Tests every store must pass; subclass it as ``TestMyStore``.

    The subclass provides a fixture ``store``: an async fixture yielding a
    connected :class:`~aq.transport.Store` on a fresh namespace (no keys or
    leases left from another test).
    """

    pytestmark = pytest.mark.asyncio

    #: Seconds the tests of expiry keep a value or a lease.
    short_ttl: ClassVar[float] = 0.2
    #: Seconds the other tests keep them: longer than any test runs.
    long_ttl: ClassVar[float] = 60.0

    async def _expire(self) -> None:
        """Wait until whatever was written with :attr:`short_ttl` has expired."""
        await asyncio.sleep(self.short_ttl + 0.1)

    async def _taken_over(self, store: Store, name: str) -> tuple[Lease, Lease]:
        """``name``'s lease held by "a" until it expired, then taken by "b"."""
        first = await store.acquire_lease(name, "a", ttl=self.short_ttl)
        assert first is not None
        await self._expire()
        second = await store.acquire_lease(name, "b", ttl=self.long_ttl)
        assert second is not None
        return first, second

    # -- values ----------------------------------------------------------------------

    async def test_a_value_set_is_read_back(self, store: Store) -> None:
        await store.set("value:a", b"1", ttl=self.long_ttl)
        assert await store.get("value:a") == b"1"

    async def test_set_replaces_the_value(self, store: Store) -> None:
        await store.set("value:a", b"1", ttl=self.long_ttl)
        await store.set("value:a", b"2", ttl=self.long_ttl)
        assert await store.get("value:a") == b"2"

    async def test_a_missing_key_reads_as_none(self, store: Store) -> None:
        assert await store.get("value:missing") is None

    async def test_delete_removes_the_value_and_says_whether_there_was_one(
        self, store: Store
    ) -> None:
        await store.set("value:a", b"1", ttl=self.long_ttl)
        assert await store.delete("value:a") is True
        assert await store.get("value:a") is None
        assert await store.delete("value:a") is False

    async def test_a_value_expires_after_its_ttl(self, store: Store) -> None:
        await store.set("value:a", b"1", ttl=self.short_ttl)
        await self._expire()
        assert await store.get("value:a") is None

    async def test_set_if_absent_writes_only_the_first_value(self, store: Store) -> None:
        assert await store.set_if_absent("once:a", b"first", ttl=self.long_ttl) is True
        assert await store.set_if_absent("once:a", b"second", ttl=self.long_ttl) is False
        assert await store.get("once:a") == b"first"

    async def test_set_if_absent_writes_again_once_the_value_expired(self, store: Store) -> None:
        await store.set_if_absent("once:a", b"first", ttl=self.short_ttl)
        await self._expire()
        assert await store.set_if_absent("once:a", b"second", ttl=self.long_ttl) is True
        assert await store.get("once:a") == b"second"

    # -- counting --------------------------------------------------------------------

    async def test_add_member_counts_distinct_members_once_each(self, store: Store) -> None:
        counts = [
            await store.add_member("group:g", member, ttl=self.long_ttl)
            for member in ("a", "b", "a", "c", "b")
        ]
        assert counts == [1, 2, 2, 3, 3]

    async def test_a_member_set_expires_after_its_ttl(self, store: Store) -> None:
        await store.add_member("group:g", "a", ttl=self.short_ttl)
        await self._expire()
        assert await store.add_member("group:g", "b", ttl=self.long_ttl) == 1

    async def test_members_lists_each_member_once(self, store: Store) -> None:
        for member in ("a", "b", "a"):
            await store.add_member("group:g", member, ttl=self.long_ttl)
        assert await store.members("group:g") == {"a", "b"}
        assert await store.members("group:none") == frozenset()

    async def test_remove_member_takes_one_member_out(self, store: Store) -> None:
        await store.add_member("group:g", "a", ttl=self.long_ttl)
        await store.add_member("group:g", "b", ttl=self.long_ttl)
        assert await store.remove_member("group:g", "a") is True
        assert await store.remove_member("group:g", "a") is False
        assert await store.members("group:g") == {"b"}

    async def test_delete_if_removes_only_the_value_named(self, store: Store) -> None:
        await store.set("value:a", b"mine", ttl=self.long_ttl)
        assert await store.delete_if("value:a", b"theirs") is False
        assert await store.get("value:a") == b"mine"
        assert await store.delete_if("value:a", b"mine") is True
        assert await store.get("value:a") is None
        assert await store.delete_if("value:a", b"mine") is False

    # -- joins -----------------------------------------------------------------------

    async def test_a_join_counts_each_index_once_and_keeps_its_first_part(
        self, store: Store
    ) -> None:
        ttl = self.long_ttl
        assert (await store.join("join:j", 0, b"a", size=3, ttl=ttl)).count == 1
        again = await store.join("join:j", 0, b"other", size=3, ttl=ttl)
        assert (again.count, again.size, again.parts) == (1, 3, None)
        assert (await store.join("join:j", 2, b"c", size=3, ttl=ttl)).parts is None
        last = await store.join("join:j", 1, b"b", size=3, ttl=ttl)
        assert last.parts == [b"a", b"b", b"c"]

    async def test_only_the_completer_gets_the_parts_and_again_until_finished(
        self, store: Store
    ) -> None:
        ttl = self.long_ttl
        await store.join("join:j", 0, b"a", size=2, ttl=ttl)
        assert (await store.join("join:j", 1, b"b", size=2, ttl=ttl)).parts == [b"a", b"b"]
        assert (await store.join("join:j", 0, b"a", size=2, ttl=ttl)).parts is None
        redelivered = await store.join("join:j", 1, b"b", size=2, ttl=ttl)
        assert redelivered.parts == [b"a", b"b"]  # the completer's own redelivery takes over
        await store.finish_join("join:j", ttl=ttl)
        assert (await store.join("join:j", 1, b"b", size=2, ttl=ttl)).parts is None

    async def test_of_many_concurrent_last_parts_exactly_one_completes(self, store: Store) -> None:
        answers = await asyncio.gather(
            *(store.join("join:j", i, b"%d" % i, size=50, ttl=self.long_ttl) for i in range(50))
        )
        completers = [a for a in answers if a.parts is not None]
        assert len(completers) == 1
        assert completers[0].parts == [b"%d" % i for i in range(50)]

    async def test_a_size_given_after_the_parts_completes_the_join(self, store: Store) -> None:
        ttl = self.long_ttl
        for i in range(3):
            assert (await store.join("join:j", i, b"x", size=None, ttl=ttl)).size is None
        done = await store.join("join:j", None, b"", size=3, ttl=ttl)
        assert (done.count, done.size, done.parts) == (3, 3, [b"x"] * 3)
        assert (await store.join("join:j", 2, b"x", size=None, ttl=ttl)).parts is None

    async def test_a_join_expires_after_its_ttl(self, store: Store) -> None:
        await store.join("join:j", 0, b"a", size=2, ttl=self.short_ttl)
        await self._expire()
        assert (await store.join("join:j", 1, b"b", size=2, ttl=self.long_ttl)).count == 1

    # -- rates -----------------------------------------------------------------------

    async def test_a_burst_goes_at_once_and_the_next_place_is_one_interval_on(
        self, store: Store
    ) -> None:
        decisions = [
            await store.reserve_rate("rate:r", interval=10.0, burst=3, max_wait=60.0)
            for _ in range(4)
        ]
        assert [d.granted for d in decisions] == [1] * 4
        assert all(d.wait <= 0 for d in decisions[:3])
        assert 9.0 < decisions[3].wait <= 10.0

    async def test_places_further_ahead_than_max_wait_are_refused_not_taken(
        self, store: Store
    ) -> None:
        assert (await store.reserve_rate("rate:r", interval=10.0, burst=1, max_wait=5.0)).reserved
        refused = await store.reserve_rate("rate:r", interval=10.0, burst=1, max_wait=5.0)
        assert refused.reserved is False
        assert 9.0 < refused.wait <= 10.0
        later = await store.reserve_rate("rate:r", interval=10.0, burst=1, max_wait=15.0)
        assert later.reserved is True
        assert 9.0 < later.wait <= 10.0  # the refused call took nothing

    async def test_many_places_are_granted_in_one_call_earliest_first(self, store: Store) -> None:
        decision = await store.reserve_rate(
            "rate:r", interval=10.0, burst=2, max_wait=25.0, count=6
        )
        # Two go at once (the burst), the next lie 10 and 20 s ahead, the rest beyond.
        assert decision.granted == 4
        assert -10.0 <= decision.wait <= 0.0
        after = await store.reserve_rate("rate:r", interval=10.0, burst=2, max_wait=0.0)
        assert after.granted == 0
        assert 29.0 < after.wait <= 30.0

    async def test_rates_at_different_keys_are_independent(self, store: Store) -> None:
        for key in ("rate:a", "rate:b"):
            decision = await store.reserve_rate(key, interval=10.0, burst=1, max_wait=0.0)
            assert decision.reserved is True

    async def test_a_quiet_rate_allows_a_full_burst_again(self, store: Store) -> None:
        interval = self.short_ttl / 2
        for _ in range(2):
            assert (
                await store.reserve_rate("rate:r", interval=interval, burst=2, max_wait=0.0)
            ).reserved
        await self._expire()
        again = [
            await store.reserve_rate("rate:r", interval=interval, burst=2, max_wait=0.0)
            for _ in range(2)
        ]
        assert [d.reserved for d in again] == [True, True]

    # -- slots -----------------------------------------------------------------------

    async def test_slots_are_given_up_to_the_limit(self, store: Store) -> None:
        taken = [
            await store.acquire_slot("slots:s", holder, limit=2, ttl=self.long_ttl)
            for holder in ("a", "b", "c")
        ]
        assert taken == [True, True, False]

    async def test_a_holder_asking_again_keeps_its_one_slot(self, store: Store) -> None:
        for _ in range(2):
            assert await store.acquire_slot("slots:s", "a", limit=2, ttl=self.long_ttl)
        assert await store.acquire_slot("slots:s", "b", limit=2, ttl=self.long_ttl)

    async def test_a_released_slot_goes_to_the_next_holder(self, store: Store) -> None:
        await store.acquire_slot("slots:s", "a", limit=1, ttl=self.long_ttl)
        assert await store.release_slot("slots:s", "a") is True
        assert await store.release_slot("slots:s", "a") is False
        assert await store.acquire_slot("slots:s", "b", limit=1, ttl=self.long_ttl)

    async def test_a_slot_not_renewed_frees_itself(self, store: Store) -> None:
        await store.acquire_slot("slots:s", "a", limit=1, ttl=self.short_ttl)
        assert not await store.acquire_slot("slots:s", "b", limit=1, ttl=self.long_ttl)
        await self._expire()
        assert await store.acquire_slot("slots:s", "b", limit=1, ttl=self.long_ttl)
        assert await store.renew_slot("slots:s", "a", ttl=self.long_ttl) is False

    async def test_a_renewed_slot_outlives_its_first_ttl(self, store: Store) -> None:
        await store.acquire_slot("slots:s", "a", limit=1, ttl=self.short_ttl)
        assert await store.renew_slot("slots:s", "a", ttl=self.long_ttl) is True
        await self._expire()
        assert not await store.acquire_slot("slots:s", "b", limit=1, ttl=self.long_ttl)

    async def test_slots_in_turn_go_to_waiters_in_the_order_they_first_asked(
        self, store: Store
    ) -> None:
        async def ask(who: str) -> tuple[bool, int]:
            turn = await store.queue_for_slot(
                "slots:s", f"holder-{who}", who, limit=1, ttl=self.long_ttl, line_ttl=self.long_ttl
            )
            return turn.acquired, turn.ahead

        assert await ask("a") == (True, 0)
        assert await ask("b") == (False, 0)
        assert await ask("c") == (False, 1)
        await store.release_slot("slots:s", "holder-a")
        assert await ask("c") == (False, 1)  # b asked first: the free slot is b's
        assert await ask("b") == (True, 0)
        await store.release_slot("slots:s", "holder-b")
        assert await ask("d") == (False, 1)  # a newcomer queues behind c
        assert await ask("c") == (True, 0)

    async def test_a_waiter_that_does_not_come_back_leaves_the_line(self, store: Store) -> None:
        await store.acquire_slot("slots:s", "holder-a", limit=1, ttl=self.long_ttl)
        refused = await store.queue_for_slot(
            "slots:s", "holder-b", "b", limit=1, ttl=self.long_ttl, line_ttl=self.short_ttl
        )
        assert not refused.acquired
        await store.release_slot("slots:s", "holder-a")
        await self._expire()
        turn = await store.queue_for_slot(
            "slots:s", "holder-c", "c", limit=1, ttl=self.long_ttl, line_ttl=self.long_ttl
        )
        assert turn == SlotTurn(True, 0)

    # -- leases ----------------------------------------------------------------------

    async def test_a_free_lease_is_acquired(self, store: Store) -> None:
        lease = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert lease is not None
        assert (lease.name, lease.owner) == ("leader", "a")

    async def test_a_held_lease_is_refused_to_another_owner(self, store: Store) -> None:
        assert await store.acquire_lease("leader", "a", ttl=self.long_ttl) is not None
        assert await store.acquire_lease("leader", "b", ttl=self.long_ttl) is None

    async def test_the_holder_acquires_again_with_the_same_token(self, store: Store) -> None:
        first = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        again = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert again == first

    async def test_leases_on_different_names_are_independent(self, store: Store) -> None:
        assert await store.acquire_lease("one", "a", ttl=self.long_ttl) is not None
        assert await store.acquire_lease("two", "b", ttl=self.long_ttl) is not None

    async def test_after_expiry_a_new_owner_gets_a_larger_token(self, store: Store) -> None:
        first, second = await self._taken_over(store, "leader")
        assert second.owner == "b"
        assert second.token > first.token

    async def test_after_release_a_new_owner_gets_a_larger_token(self, store: Store) -> None:
        first = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert first is not None
        assert await store.release_lease(first) is True
        second = await store.acquire_lease("leader", "b", ttl=self.long_ttl)
        assert second is not None
        assert second.token > first.token

    async def test_a_renewed_lease_outlives_its_first_ttl(self, store: Store) -> None:
        lease = await store.acquire_lease("leader", "a", ttl=self.short_ttl)
        assert lease is not None
        assert await store.renew_lease(lease, ttl=self.long_ttl) is True
        await self._expire()
        assert await store.acquire_lease("leader", "b", ttl=self.long_ttl) is None
        assert await store.renew_lease(lease, ttl=self.long_ttl) is True

    async def test_renewing_a_lease_taken_over_fails_and_leaves_the_new_holder(
        self, store: Store
    ) -> None:
        first, _ = await self._taken_over(store, "leader")
        assert await store.renew_lease(first, ttl=self.long_ttl) is False
        assert await store.acquire_lease("leader", "c", ttl=self.long_ttl) is None

    async def test_renewing_a_released_lease_fails(self, store: Store) -> None:
        lease = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert lease is not None
        await store.release_lease(lease)
        assert await store.renew_lease(lease, ttl=self.long_ttl) is False

    async def test_releasing_a_lost_lease_returns_false_and_leaves_the_new_holder(
        self, store: Store
    ) -> None:
        first = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert first is not None
        await store.release_lease(first)
        assert await store.acquire_lease("leader", "b", ttl=self.long_ttl) is not None
        assert await store.release_lease(first) is False
        assert await store.acquire_lease("leader", "c", ttl=self.long_ttl) is None

    # -- fenced writes ---------------------------------------------------------------

    async def test_set_fenced_writes_while_the_lease_is_held(self, store: Store) -> None:
        lease = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert lease is not None
        assert await store.set_fenced("state:s", b"a", ttl=self.long_ttl, lease=lease) is True
        assert await store.get("state:s") == b"a"

    async def test_set_fenced_refuses_a_released_lease(self, store: Store) -> None:
        lease = await store.acquire_lease("leader", "a", ttl=self.long_ttl)
        assert lease is not None
        await store.release_lease(lease)
        assert await store.set_fenced("state:s", b"a", ttl=self.long_ttl, lease=lease) is False
        assert await store.get("state:s") is None

    async def test_set_fenced_refuses_a_lease_that_passed_to_another_owner(
        self, store: Store
    ) -> None:
        first, _ = await self._taken_over(store, "leader")
        assert await store.set_fenced("state:s", b"a", ttl=self.long_ttl, lease=first) is False
        assert await store.get("state:s") is None

    async def test_set_fenced_refuses_an_older_token_after_a_newer_one_wrote(
        self, store: Store
    ) -> None:
        first = await store.acquire_lease("leader", "a", ttl=self.short_ttl)
        assert first is not None
        assert await store.set_fenced("state:s", b"a", ttl=self.long_ttl, lease=first) is True
        await self._expire()
        second = await store.acquire_lease("leader", "b", ttl=self.long_ttl)
        assert second is not None
        assert await store.set_fenced("state:s", b"b", ttl=self.long_ttl, lease=second) is True
        assert await store.set_fenced("state:s", b"a2", ttl=self.long_ttl, lease=first) is False
        assert await store.get("state:s") == b"b"
