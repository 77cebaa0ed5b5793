"""Hand-written mutants of the writer's core, for ``run.py`` (not a test module).

Each mutant is one exact textual replacement: ``old`` must occur exactly once in ``file``
(``run.py`` refuses to start otherwise, so a stale snippet is noticed, not skipped). The
description names the fault it models. A mutant that no test can kill, because it does
not change what the code does, carries ``equivalent``: why it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

INTAKE = "batchlog/_intake.py"
WORKER = "batchlog/_worker.py"
REQUESTS = "batchlog/_requests.py"


@dataclass(frozen=True)
class Mutant:
    """One fault: replace ``old`` (exactly once in ``file``) by ``new``."""

    id: str
    file: str
    description: str
    old: str
    new: str
    equivalent: str | None = None


#: Breaks ``import batchlog`` in the copy: proves the tests import the copy, not /work/main.
CANARY = Mutant(
    "CANARY",
    INTAKE,
    "import of the mutated copy fails (the tests must fail)",
    "from ._requests import resolve_soon\n",
    'from ._requests import resolve_soon\n\nraise ImportError("mutation canary")\n',
)

MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ intake: adding
    Mutant(
        "I01",
        INTAKE,
        "add: signal threshold off by one (> instead of >=)",
        "            if len(self._queue) >= self._signal_at and not self._signal():\n"
        "                self._refuse_closed()",
        "            if len(self._queue) > self._signal_at and not self._signal():\n"
        "                self._refuse_closed()",
    ),
    Mutant(
        "I02",
        INTAKE,
        "offer: the fast path never signals the worker",
        "            if len(self._queue) >= self._signal_at and not self._signal():\n"
        "                self._count_drop()\n"
        "                return False\n"
        "            return True\n"
        "        if self._add_slow(record, timeout):",
        "            return True\n        if self._add_slow(record, timeout):",
    ),
    Mutant(
        "I03",
        INTAKE,
        "_append: signal threshold off by one (<= instead of <)",
        "        self._append_record(record)\n"
        "        return len(self._queue) < self._signal_at or self._signal()\n"
        "\n"
        "    def _take_slot",
        "        self._append_record(record)\n"
        "        return len(self._queue) <= self._signal_at or self._signal()\n"
        "\n"
        "    def _take_slot",
    ),
    Mutant(
        "I04",
        INTAKE,
        "_signal: coalescing broken, every later add wakes the worker again",
        "        self._signal_at = _NEVER  # one wake-up per batch: the next adders need not\n",
        "",
    ),
    Mutant(
        "I05",
        INTAKE,
        "_signal: the wake is missing",
        "        self._owner.wake()\n        return True\n",
        "        return True\n",
    ),
    Mutant(
        "I06",
        INTAKE,
        "_signal: a record arriving after the end is accepted (lost)",
        "        if self._finished:\n            return self._refuse_late()\n",
        "        if self._finished:\n            return True\n",
    ),
    Mutant(
        "I07",
        INTAKE,
        "_refuse_late: the late record is refused but left in the queue",
        "                self._queue.popleft()\n                if self.reclaimed:",
        "                if self.reclaimed:",
    ),
    Mutant(
        "I08",
        INTAKE,
        "_refuse_late: not re-armed, so the next late record is silently accepted",
        "        self._signal_at = 1\n        return False\n",
        "        return False\n",
    ),
    Mutant(
        "I09",
        INTAKE,
        "_count_drop counts nothing",
        "    def _count_drop(self) -> None:\n"
        "        with self.lock:\n"
        "            self.dropped += 1\n",
        "    def _count_drop(self) -> None:\n        with self.lock:\n            pass\n",
    ),
    Mutant(
        "I10",
        INTAKE,
        "_refuse: a full-queue refusal is not counted as dropped",
        "            self._refuse_closed()\n"
        "        self._count_drop()\n"
        "        if self._owner.on_sink_thread():",
        "            self._refuse_closed()\n        if self._owner.on_sink_thread():",
    ),
    Mutant(
        "I11",
        INTAKE,
        "_refuse: a closed writer refuses with QueueFullError, not WriterClosedError",
        "        if self.sealed:\n            self._refuse_closed()\n        self._count_drop()\n",
        "        self._count_drop()\n",
    ),
    Mutant(
        "I12",
        INTAKE,
        "_refuse_closed: a refusal by a closed writer is not counted as dropped",
        "    def _refuse_closed(self) -> NoReturn:\n        self._count_drop()\n",
        "    def _refuse_closed(self) -> NoReturn:\n",
    ),
    Mutant(
        "I13",
        INTAKE,
        "_take_slot: no sealed check before making a chunk of slots",
        "                if self.sealed:\n                    return False\n                chunk",
        "                chunk",
        equivalent=(
            "sealing empties the unmade source under the same lock (_steal_free_slots), and "
            "nothing refills it while sealed (_give_back keeps slots in stolen_by_worker), so "
            "the chunk made here is always empty and the pop after it fails as the check would"
        ),
    ),
    Mutant(
        "I14",
        INTAKE,
        "_take_slot: makes slots from nowhere (the bound is not exact)",
        "self._slots.extend(itertools.islice(self._unmade, chunk))",
        "self._slots.extend(itertools.repeat(None, chunk))",
    ),
    Mutant(
        "I15",
        INTAKE,
        "_add_slow: waits for room on the worker thread (deadlock)",
        "        if timeout == 0 or owner.on_sink_thread():\n            return False\n",
        "        if timeout == 0:\n            return False\n",
    ),
    Mutant(
        "I16",
        INTAKE,
        "_add_slow: a blocked add does not register as a waiter (never notified)",
        "        waiter = room.register()\n",
        "        waiter = threading.Lock()\n        waiter.acquire()\n",
    ),
    Mutant(
        "I17",
        INTAKE,
        "_add_slow: the deadline is ignored (a timed add waits forever)",
        "                    if remaining <= 0:\n                        break\n",
        "",
    ),
    Mutant(
        "I18",
        INTAKE,
        "_add_slow: a blocked add does not wake the worker",
        "                owner.wake()  # a backstop: the worker should be emptying the queue",
        "                pass  # a backstop: the worker should be emptying the queue",
    ),
    Mutant(
        "I19",
        INTAKE,
        "_evict_for: an evicted record is not counted",
        "zip(iter(self._queue.popleft, _NOT_A_SLOT), self._evictions)",
        "zip(iter(self._queue.popleft, _NOT_A_SLOT), itertools.repeat(None))",
    ),
    Mutant(
        "I20",
        INTAKE,
        "try_add: a full queue is refused even with evict_oldest",
        "        if not evict_oldest and (self.sealed or not operator.length_hint(self._unmade)):",
        "        if self.sealed or not operator.length_hint(self._unmade):",
    ),
    Mutant(
        "I21",
        INTAKE,
        "_evict_for: gives up when no slot is free, though a record could go",
        "                if not self._queue:\n                    return False",
        "                if True:\n                    return False",
    ),
    Mutant(
        "I22",
        INTAKE,
        "add_async: the waiting future is not registered (never resolved by room)",
        "            self._space_futures.append(entry)\n",
        "",
    ),
    # ------------------------------------------------------------------ intake: the worker's side
    Mutant(
        "I23",
        INTAKE,
        "take: one record too many per batch (min(limit + 1, ...))",
        "            taken = min(limit, waiting)",
        "            taken = min(limit + 1, waiting)",
    ),
    Mutant(
        "I24",
        INTAKE,
        "take: in_flight not set (records vanish from the buffer count)",
        "                self.in_flight = taken\n",
        "",
    ),
    Mutant(
        "I25",
        INTAKE,
        "take: forgets to give the slots back",
        "                self._give_back(taken)\n",
        "",
    ),
    Mutant(
        "I26",
        INTAKE,
        "take: says emptied always",
        "        return taken, taken == waiting",
        "        return taken, True",
    ),
    Mutant(
        "I27",
        INTAKE,
        "take: says emptied only when nothing was waiting",
        "        return taken, taken == waiting",
        "        return taken, waiting == 0",
    ),
    Mutant(
        "I28",
        INTAKE,
        "take: a late record is not un-reclaimed",
        "            if self.sealed:\n                self._unreclaim_late_records()\n",
        "",
    ),
    Mutant(
        "I29",
        INTAKE,
        "take: blocked adders are not told about the room made",
        "        if taken:\n            self._notify_space()\n",
        "",
    ),
    Mutant(
        "I30",
        INTAKE,
        "_notify_space: threads waiting for room are not woken (only event loops)",
        "        if self._room or self._space_futures:\n            self._wake_all_adders()",
        "        if self._space_futures:\n            self._wake_all_adders()",
    ),
    Mutant(
        "I31",
        INTAKE,
        "_give_back: slots given back while closing are not kept (counted nowhere)",
        "            self.stolen_by_worker += count  # closing: keep them, nothing more gets in\n",
        "",
    ),
    Mutant(
        "I32",
        INTAKE,
        "_give_back: _KEEP_FREE ignored, every slot stays in the deque",
        "        to_deque = min(count, max(0, _KEEP_FREE - len(self._slots)))",
        "        to_deque = count",
    ),
    Mutant(
        "I33",
        INTAKE,
        "_give_back: keeps one slot too many in the deque",
        "min(count, max(0, _KEEP_FREE - len(self._slots)))",
        "min(count, max(0, _KEEP_FREE + 1 - len(self._slots)))",
    ),
    Mutant(
        "I34",
        INTAKE,
        "_give_back: slots beyond _KEEP_FREE are made twice (deque and source)",
        "unmade + count - to_deque",
        "unmade + count",
    ),
    Mutant(
        "I35",
        INTAKE,
        "_give_back: slots beyond _KEEP_FREE are lost",
        "            unmade = operator.length_hint(self._unmade)\n"
        "            self._unmade = itertools.repeat(None, unmade + count - to_deque)\n",
        "            pass\n",
    ),
    Mutant(
        "I36",
        INTAKE,
        "_give_back: rebuilds the source also when nothing goes back to it",
        "        if to_deque < count:",
        "        if to_deque <= count:",
        equivalent=(
            "with to_deque == count the source is rebuilt with length_hint + 0 slots: the "
            "same count of the same None tokens, so no slot is made or lost"
        ),
    ),
    Mutant(
        "I37",
        INTAKE,
        "seal: forgets to steal the free slots",
        "            self._steal_free_slots()\n        if first:",
        "        if first:",
    ),
    Mutant(
        "I38",
        INTAKE,
        "_steal_free_slots: the unmade slots are not counted as stolen",
        "            self.stolen_by_worker += unmade\n",
        "",
    ),
    Mutant(
        "I39",
        INTAKE,
        "_steal_free_slots: the free slots in the deque stay in reach of adders",
        "        with contextlib.suppress(IndexError):\n"
        "            self._stolen.extend(iter(self._pop_slot, _NOT_A_SLOT))\n",
        "",
    ),
    Mutant(
        "I40",
        INTAKE,
        "seal: adders blocked for room are not woken",
        "        if first:\n            self._wake_all_adders()\n        return first",
        "        return first",
    ),
    Mutant(
        "I41",
        INTAKE,
        "_outstanding: the slots stolen into the deque are not counted",
        "        stolen = len(self._stolen) + self.stolen_by_worker",
        "        stolen = self.stolen_by_worker",
    ),
    Mutant(
        "I42",
        INTAKE,
        "held: off by one (one adder holding a slot is not seen)",
        "        return self._outstanding() - len(self._queue)",
        "        return self._outstanding() - len(self._queue) - 1",
    ),
    Mutant(
        "I43",
        INTAKE,
        "reclaim: counts but does not take the slots back",
        "                self.stolen_by_worker += lost\n                self.reclaimed += lost",
        "                self.reclaimed += lost",
    ),
    Mutant(
        "I44",
        INTAKE,
        "reclaim: the reclaimed records are not counted as dropped",
        "                self.dropped += lost\n",
        "",
    ),
    Mutant(
        "I45",
        INTAKE,
        "_unreclaim_late_records: the late record stays counted as dropped",
        "            self.dropped -= undo\n",
        "",
    ),
    Mutant(
        "I46",
        INTAKE,
        "finish: the intake is never marked finished",
        "            self._finished = True\n        self._signal_at = 1\n",
        "            pass\n        self._signal_at = 1\n",
    ),
    Mutant(
        "I47",
        INTAKE,
        "finish: not re-armed, so a late record is not noticed",
        "            self._finished = True\n        self._signal_at = 1\n",
        "            self._finished = True\n",
    ),
    Mutant(
        "I48",
        INTAKE,
        "in_buffer: the batch in flight is not counted",
        "        return self._outstanding() + self.in_flight",
        "        return self._outstanding()",
    ),
    Mutant(
        "I49",
        INTAKE,
        "disarm missing: an awake worker is still signalled",
        "        self._signal_at = _NEVER\n\n    def __len__",
        "        pass\n\n    def __len__",
    ),
    Mutant(
        "I50",
        INTAKE,
        "try_add: the refusal of a full queue (its one-frame path) is not counted",
        "            with self.lock:  # full (or closed): the common refusal, in this one frame\n"
        "                self.dropped += 1\n",
        "            pass\n",
    ),
    Mutant(
        "I51",
        INTAKE,
        "try_add: the free slots in the deque are not looked at",
        "        if self._slots:\n            try:",
        "        if False:\n            try:",
    ),
    Mutant(
        "I52",
        INTAKE,
        "_refuse_late: a late record after a reclaim is counted dropped twice",
        "                if self.reclaimed:\n"
        "                    self.reclaimed -= 1\n"
        "                    self.dropped -= 1\n",
        "",
    ),
    # ------------------------------------------------------------------ worker: loop and timing
    Mutant(
        "W01",
        WORKER,
        "wake: the event is not set (a missing wake)",
        "            return\n        self._wake_event.set()\n\n    def on_sink_thread",
        "            return\n\n    def on_sink_thread",
    ),
    Mutant(
        "W02",
        WORKER,
        "loop: a full batch waits for one record more (> instead of >=)",
        "            if size >= capacity:",
        "            if size > capacity:",
    ),
    Mutant(
        "W03",
        WORKER,
        "loop: the window ends only after its deadline (< instead of <=)",
        "            if remaining <= 0:",
        "            if remaining < 0:",
    ),
    Mutant(
        "W04",
        WORKER,
        "loop: armed one record too high while waiting for the window",
        "            intake.arm(capacity)",
        "            intake.arm(capacity + 1)",
    ),
    Mutant(
        "W05",
        WORKER,
        "loop: disarm missing after the window wait",
        "                clock.wait(self._wake_event, remaining)\n            intake.disarm()\n",
        "                clock.wait(self._wake_event, remaining)\n",
    ),
    Mutant(
        "W06",
        WORKER,
        "loop: the wake event is not cleared before the window wait (spins)",
        "            self._wake_event.clear()\n            intake.arm(capacity)",
        "            intake.arm(capacity)",
        equivalent=(
            "the wake-up is a _sync.Wakeup, which a wait consumes: the idle or window wait "
            "that woke the worker already took it, so the clear only drops one that arrived "
            "since, and without it the worker makes one extra pass of its loop, which "
            "re-checks size, requests and seal and waits again (with a threading.Event it "
            "would spin: test_worker_waiting_for_a_window_has_cleared_its_wake_event kills it)"
        ),
    ),
    Mutant(
        "W07",
        WORKER,
        "loop: a flush drains one batch, not everything waiting",
        "                window_start = self._drain(len(intake), window_start)\n"
        "                request.complete()",
        "                window_start = self._drain(capacity, window_start)\n"
        "                request.complete()",
    ),
    Mutant(
        "W08",
        WORKER,
        "loop: a flush request is taken but never completed",
        "                request.complete()\n                continue\n",
        "                continue\n",
    ),
    Mutant(
        "W09",
        WORKER,
        "_drain: the next window starts after the batch, not before it",
        "                return started\n",
        "                return clock.now()\n",
    ),
    Mutant(
        "W10",
        WORKER,
        "_drain: the old window is kept after the queue ran dry",
        "                return started\n",
        "                return window_start\n",
    ),
    Mutant(
        "W11",
        WORKER,
        "idle: the window starts when the worker looked, even if no add woke it",
        "        return clock.now() if woken else idle_since",
        "        return clock.now()",
    ),
    Mutant(
        "W12",
        WORKER,
        "idle: the window always starts when the worker went idle",
        "        return clock.now() if woken else idle_since",
        "        return idle_since",
    ),
    Mutant(
        "W13",
        WORKER,
        "idle: armed at 2, so the first record does not wake the worker",
        "        intake.arm(1)\n        woken = False",
        "        intake.arm(2)\n        woken = False",
    ),
    Mutant(
        "W14",
        WORKER,
        "_drain: does not count down, so it drains past what it was asked",
        "                count -= taken\n",
        "",
    ),
    # ------------------------------------------------------------------ worker: delivery, counts
    Mutant(
        "W15",
        WORKER,
        "_deliver: in_flight not reset",
        "            self.intake.in_flight = 0\n            self._flush_count += 1\n",
        "            self._flush_count += 1\n",
    ),
    Mutant(
        "W16",
        WORKER,
        "_deliver: processed and failed swapped",
        "                self._processed += size\n"
        "            else:\n"
        "                failed = len(failed_records)\n"
        "                self._processed += size - failed\n"
        "                self._failed += failed\n",
        "                self._failed += size\n"
        "            else:\n"
        "                failed = len(failed_records)\n"
        "                self._failed += size - failed\n"
        "                self._processed += failed\n",
    ),
    Mutant(
        "W17",
        WORKER,
        "_deliver: a failure is reported but its records not counted as failed",
        "                self._failed += failed\n                self._flush_errors += 1\n",
        "                self._flush_errors += 1\n",
    ),
    Mutant(
        "W18",
        WORKER,
        "_deliver: a failed flush is not counted in flush_errors",
        "                self._flush_errors += 1\n",
        "",
    ),
    Mutant(
        "W19",
        WORKER,
        "_deliver: flush_count not counted",
        "            self._flush_count += 1\n",
        "",
    ),
    Mutant(
        "W20",
        WORKER,
        "_deliver: max duration is the last one",
        "            self._max_duration = max(duration, self._max_duration)",
        "            self._max_duration = duration",
    ),
    Mutant(
        "W21",
        WORKER,
        "_deliver: total duration overwritten instead of summed",
        "            self._total_duration += duration",
        "            self._total_duration = duration",
    ),
    Mutant(
        "W22",
        WORKER,
        "_deliver: the worker dies on a sink's BaseException",
        "        except BaseException as exc:  # noqa: BLE001 -- a failing sink must not kill",
        "        except Exception as exc:  # noqa: BLE001 -- a failing sink must not kill",
    ),
    Mutant(
        "W23",
        WORKER,
        "_deliver: the reused buffer is not cleared (clear_buffers)",
        "        finally:\n            if self._clear_buffers:\n                batch.clear()\n",
        "        finally:\n            pass\n",
    ),
    Mutant(
        "W24",
        WORKER,
        "_must_stop: a sink's SystemExit stops the worker thread too",
        "        return not isinstance(failure, Exception) and self.sink_thread != "
        "self._worker_ident()",
        "        return not isinstance(failure, Exception)",
    ),
    Mutant(
        "W25",
        WORKER,
        "_deliver: sink_running not set (a sink feeding its own writer is not noticed)",
        "        self.sink_running = True\n",
        "",
    ),
    # ------------------------------------------------------------------ worker: reporting
    Mutant(
        "W26",
        WORKER,
        "on_error's BaseException not guarded (kills the worker)",
        "            except BaseException as error_handler_failure:  # noqa: BLE001 -- reported",
        "            except Exception as error_handler_failure:  # noqa: BLE001 -- reported",
    ),
    Mutant(
        "W27",
        WORKER,
        "on_error exceptions not guarded at all",
        "            try:\n"
        "                on_error(failure, failed)\n"
        "            except BaseException as error_handler_failure:  # noqa: BLE001 -- reported\n"
        "                self.report(\n"
        '                    f"on_error raised while handling a failed batch of {len(failed)} '
        'records",\n'
        "                    error_handler_failure,\n"
        "                )\n",
        "            on_error(failure, failed)\n",
    ),
    Mutant(
        "W28",
        WORKER,
        "a failure handled by on_error is also reported",
        "                    error_handler_failure,\n                )\n            return\n",
        "                    error_handler_failure,\n                )\n",
    ),
    Mutant(
        "W29",
        WORKER,
        "on_error is given a sink's BaseException (typed Exception) as well",
        "        if on_error is not None and isinstance(failure, Exception):",
        "        if on_error is not None:",
    ),
    Mutant(
        "W30",
        WORKER,
        "report: a logged report also goes to stderr",
        "            else:\n"
        "                return\n"
        '        self._reporter.report(f"writer {self.name!r}: {message}", failure)',
        '        self._reporter.report(f"writer {self.name!r}: {message}", failure)',
    ),
    Mutant(
        "W31",
        WORKER,
        "report: a failing logger is not guarded",
        "            except BaseException as logger_failure:  # noqa: BLE001 -- to stderr instead\n"
        '                self._reporter.report(f"writer {self.name!r}: logger failed", '
        "logger_failure)\n",
        "            except Exception as logger_failure:  # noqa: BLE001 -- to stderr instead\n"
        '                self._reporter.report(f"writer {self.name!r}: logger failed", '
        "logger_failure)\n",
    ),
    # ------------------------------------------------------------------ worker: closing
    Mutant(
        "W32",
        WORKER,
        "close stops while an adder holds a slot (held() ignored)",
        "                held = intake.held()",
        "                held = 0",
    ),
    Mutant(
        "W33",
        WORKER,
        "close never reclaims a lost slot",
        "                lost = intake.reclaim()",
        "                lost = 0",
    ),
    Mutant(
        "W34",
        WORKER,
        "close waits for a lost slot forever (the grace never ends)",
        "            if now >= grace_ends:",
        "            if False:",
    ),
    Mutant(
        "W35",
        WORKER,
        "close: the grace wait is not armed, so a late append does not end it",
        "            intake.arm(1)\n            if not len(intake):\n",
        "            if not len(intake):\n",
    ),
    Mutant(
        "W36",
        WORKER,
        "close: on_close's BaseException not guarded",
        "            except BaseException as close_failure:  # noqa: BLE001 -- reported",
        "            except Exception as close_failure:  # noqa: BLE001 -- reported",
    ),
    Mutant(
        "W37",
        WORKER,
        "begin_close does not wake the worker",
        "        self.intake.seal()\n        self._wake_event.set()\n",
        "        self.intake.seal()\n",
    ),
    Mutant(
        "W38",
        WORKER,
        "_give_up: the records left are not counted as failed",
        "                self._failed += taken\n",
        "",
    ),
    Mutant(
        "W39",
        WORKER,
        "_give_up: does not seal, so adds go on being accepted by a dead worker",
        '        intake.seal(f"stopped: its worker ended on {type(failure).__name__}")\n',
        "",
    ),
    Mutant(
        "W40",
        WORKER,
        "_give_up: in_flight not reset",
        "                intake.in_flight = 0\n                self._failed += taken\n",
        "                self._failed += taken\n",
    ),
    Mutant(
        "W41",
        WORKER,
        "_end: requests report success though the worker failed",
        "            self._finish(ok=failure is None)",
        "            self._finish(ok=True)",
    ),
    Mutant(
        "W42",
        WORKER,
        "_run: the worker's failure is treated as a clean end",
        "        except BaseException as exc:  # noqa: BLE001 -- the worker ends, but never"
        " silently\n            self._end(exc)\n",
        "        except BaseException:  # noqa: BLE001 -- the worker ends, but never"
        " silently\n            self._end(None)\n",
    ),
    Mutant(
        "W43",
        WORKER,
        "_finish: requests not completed on end",
        "            self.requests.release_all(ok=ok)\n",
        "            pass\n",
    ),
    Mutant(
        "W44",
        WORKER,
        "_finish: the intake is not finished (late adds accepted)",
        "            self.intake.finish()\n",
        "            pass\n",
    ),
    # ------------------------------------------------------------------ worker: waiting
    Mutant(
        "W45",
        WORKER,
        "await_request: a flush from inside the sink waits for itself",
        "        if self.on_sink_thread():\n"
        "            self._wake_event.set()  # called from inside flush_fn: never wait for"
        " ourselves\n"
        "            return False\n",
        "",
    ),
    Mutant(
        "W46",
        WORKER,
        "await_request: the worker is not woken for a flush",
        "        if self.running():\n"
        "            self._wake_event.set()\n"
        "        elif timeout is None",
        "        if self.running():\n            pass\n        elif timeout is None",
    ),
    Mutant(
        "W47",
        WORKER,
        "drain_inline: a flush drained on the calling thread is not completed",
        "                self._drain(len(intake), None)\n"
        "                if request is not None:\n"
        "                    request.complete()\n",
        "                self._drain(len(intake), None)\n",
    ),
    Mutant(
        "W48",
        WORKER,
        "drain_inline: a close drained on the calling thread never finishes",
        "                        self._finish(ok=True)\n",
        "                        pass\n",
    ),
    Mutant(
        "W49",
        WORKER,
        "wake without a thread: nothing is delivered on the calling thread",
        "                self.drain_here()\n            return\n        self._wake_event.set()",
        "                pass\n            return\n        self._wake_event.set()",
    ),
    # ------------------------------------------------------------------ requests
    Mutant(
        "R01",
        REQUESTS,
        "flush: coalescing broken, a new request every time (the waiting one is orphaned)",
        "            if request is None:\n                request = self._pending = Request()\n",
        "            request = self._pending = Request()\n",
    ),
]
