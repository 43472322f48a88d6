"""The collective transport of weight sync (rollout.weight_sync.transport = 'collective'): learner rank 0
broadcasts each version's flat buffer (trainer/actors/weight_sync.py) to the live rollout actors, and
only the packet's header (version, table) goes through Ray.

The members (group rank 0 = learner rank 0, then the live rollout actors) build a process group of their
own over a TCPStore that rank 0 hosts, with torch's backend classes (ProcessGroupGloo / ProcessGroupNCCL)
and never init_process_group: the learner group's default group (DDP) is untouched, and this group can be
torn down and formed again while the run goes on, as vLLM's StatelessProcessGroup and OpenRLHF's
init_process_group helper do for their weight-update groups. NCCL when every member holds its policy on
CUDA, gloo over CPU buffers otherwise.

Nothing here may hang the run: every operation is bounded by rollout.weight_sync.timeout_s; on any
failure the driver (Broadcaster) tears the group down and the version goes through the object store.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import ray
import torch
import torch.distributed as dist
from ray.exceptions import RayError

from trainer.actors.weight_sync import WeightPacket
from trainer.config import WeightSyncConfig

log = logging.getLogger(__name__)
_POLL_S = 0.001  # how often a member looks at its broadcast's completion (bounded wait, also for NCCL)
_DRIVER_MARGIN_S = 10.0  # the driver's wait beyond timeout_s: Ray's call overhead, never the transfer


class LinkError(RuntimeError):
    """This process is not (or no longer) in the broadcast group a call names."""


@dataclass
class _Link:
    gen: int
    pg: dist.ProcessGroup
    device: torch.device  # where the group's buffers live (cuda for NCCL, cpu for gloo)
    timeout_s: float


class WeightLink:
    """One end of the broadcast group, mixed into the members' Ray actor classes (Learner, RolloutWorker),
    which have a `device`. Group rank 0 hosts the store and sends; the others receive."""

    _link: _Link | None = None
    _store: dist.TCPStore | None = None

    def link_host(self, timeout_s: float) -> tuple[str, int, str]:
        """Rank 0: open the group's store on a free port of this node; (address, port, this member's device type)."""
        self.link_leave()
        address = ray.util.get_node_ip_address()
        self._store = dist.TCPStore(address, 0, is_master=True, timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
        return address, self._store.port, self.device.type

    def link_join(self, gen: int, address: str, port: int, rank: int, size: int, backend: str, timeout_s: float) -> None:
        """Join group `gen` (every member calls this at once; it returns when all are connected)."""
        if rank:
            self.link_leave()
            self._store = dist.TCPStore(address, port, is_master=False, timeout=timedelta(seconds=timeout_s))
        store = dist.PrefixStore(f"weights/{gen}", self._store)
        timeout = timedelta(seconds=timeout_s)
        if backend == "nccl":
            device = torch.device("cuda", torch.cuda.current_device() if self.device.index is None else self.device.index)
            torch.cuda.set_device(device)
            opts = dist.ProcessGroupNCCL.Options()
            opts._timeout = timeout
            pg = dist.ProcessGroupNCCL(store, rank, size, opts)
        else:
            device = torch.device("cpu")
            opts = dist.ProcessGroupGloo._Options()
            opts._timeout = timeout
            opts._devices = [dist.ProcessGroupGloo.create_device(hostname=ray.util.get_node_ip_address())]
            pg = dist.ProcessGroupGloo(store, rank, size, opts)
        self._link = _Link(gen, pg, device, timeout_s)
        self._link_broadcast(gen, torch.zeros(1, dtype=torch.uint8, device=device))  # NCCL connects lazily: make the join complete

    def link_leave(self) -> None:
        """Drop the group (an operation still under way ends with its timeout or its peers' disconnect)."""
        link, self._link = self._link, None
        if link is not None and hasattr(link.pg, "abort"):  # NCCL: free the communicator now, before its watchdog acts
            try:
                link.pg.abort()
            except RuntimeError:
                pass

    def _link_broadcast(self, gen: int, flat: torch.Tensor) -> torch.Tensor:
        """Broadcast `flat` from rank 0 (uint8, the same length everywhere) within the link's timeout; returns the
        tensor that holds the bytes (on the group's device)."""
        link = self._link
        if link is None or link.gen != gen:
            raise LinkError(f"this process is not in broadcast group {gen} (now: {link.gen if link else 'none'})")
        flat = flat.to(link.device)
        work = link.pg.broadcast(flat, 0)
        deadline = time.monotonic() + link.timeout_s
        while not work.is_completed():  # NCCL's wait() only orders streams: poll, so the wait is bounded here too
            if time.monotonic() > deadline:
                self.link_leave()
                raise TimeoutError(f"broadcast group {gen}: no completion within {link.timeout_s:g} s (rollout.weight_sync.timeout_s)")
            time.sleep(_POLL_S)
        work.wait()  # raises the operation's own error (a peer gone, gloo's timeout)
        return flat

    def _link_spare(self, nbytes: int) -> torch.Tensor:
        """A receive buffer of nbytes on the group's device: a recycled one when there is one."""
        spares = self.__dict__.setdefault("_spares", [])
        device = self._link.device if self._link else torch.device("cpu")
        for i, buf in enumerate(spares):
            if buf.numel() == nbytes and buf.device == device:
                return spares.pop(i)
        return torch.empty(nbytes, dtype=torch.uint8, device=device)

    def _link_recycle(self, packet: WeightPacket, keep: int) -> None:
        """Keep a loaded broadcast packet's buffer for the next version (at most `keep` spares)."""
        spares = self.__dict__.setdefault("_spares", [])
        if isinstance(packet.buffer, torch.Tensor) and len(spares) < keep:
            spares.append(packet.buffer)


@dataclass
class Round:
    """One version's broadcast: rank 0's send and each member actor's receive (actor index -> ref)."""

    version: int
    send: ray.ObjectRef
    receipts: dict[int, ray.ObjectRef]


class Broadcaster:
    """The driver's side: forms the group over learner rank 0 and the live actors once their membership is
    stable (the same at two versions in a row, counted afresh after a failure), starts one round per version,
    and settles a round before the next starts (one broadcast in flight keeps every member's operations in the
    same order). Any failure tears the group down; after cfg.max_failures in a row the run stays on the
    object store."""

    def __init__(self, cfg: WeightSyncConfig, faults: Counter):
        self.cfg = cfg
        self.faults = faults
        self.gen = 0
        self.key: tuple | None = None  # the formed group's membership, None when there is no group
        self.handles: list = []  # the formed group's members (rank order), to tell them to leave
        self.round: Round | None = None
        self.failures = 0
        self.off = False
        self._last_key: tuple | None = None

    def start(self, version: int, source, actors: dict[int, object], key: tuple, devices: list[str]) -> dict[int, ray.ObjectRef] | None:
        """Broadcast `version` from `source` (learner rank 0) to `actors` (index -> handle: the live ones, whose
        incarnations `key` names); returns the actors' receipts, or None: this version goes by the object store."""
        if self.round is not None:
            raise RuntimeError("settle() the previous broadcast first")
        stable, self._last_key = key == self._last_key, key
        if self.off or not actors:
            return None
        if self.key is not None and self.key != key:
            self.reset("the live rollout actors changed")
        if self.key is None and not (stable and self._form(source, actors, key, devices)):
            return None
        header = source.link_header.remote(version)
        send = source.link_send.remote(self.gen)
        receipts = {i: a.link_receive.remote(self.gen, header) for i, a in actors.items()}
        self.round = Round(version, send, receipts)
        return receipts

    def settle(self) -> tuple[Round, list[int]]:
        """Wait (bounded) for the round under way; returns it and the actors that did not get its version."""
        r, self.round = self.round, None
        refs = [r.send, *r.receipts.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.cfg.timeout_s + _DRIVER_MARGIN_S)
        errors = {}
        for key, ref in [("learner", r.send), *r.receipts.items()]:
            if ref not in ready:
                errors[key] = "no answer in time"
                continue
            try:
                ray.get(ref)
            except RayError as exc:  # the member's error (timeout, a peer gone) or its death
                errors[key] = str(exc).strip().splitlines()[-1][:200]
        if not errors:
            self.failures = 0
            return r, []
        self._fail(f"the broadcast of version {r.version} failed ({'; '.join(f'{k}: {v}' for k, v in errors.items())})")
        return r, list(r.receipts) if "learner" in errors else [i for i in r.receipts if i in errors]

    def reset(self, why: str | None = None) -> None:
        """Tear the group down (its members leave without waiting); a round under way is dropped."""
        if self.key is not None and why:
            log.warning("weight broadcast group %d torn down: %s; the object store carries the versions until it forms again", self.gen, why)
        for h in self.handles:
            h.link_leave.remote()
        self.key, self.handles, self.round = None, [], None

    def _form(self, source, actors: dict[int, object], key: tuple, devices: list[str]) -> bool:
        self.gen += 1
        t = self.cfg.timeout_s
        try:
            address, port, source_device = ray.get(source.link_host.remote(t), timeout=t + _DRIVER_MARGIN_S)
            cuda = source_device == "cuda" and all(devices[i].startswith("cuda") for i in actors)
            backend = "nccl" if cuda else "gloo"
            members = [source, *actors.values()]
            ray.get([m.link_join.remote(self.gen, address, port, rank, len(members), backend, t) for rank, m in enumerate(members)], timeout=t + _DRIVER_MARGIN_S)
        except RayError as exc:  # a member's error, its death, or no answer in time
            self.handles = [source, *actors.values()]
            self._fail(f"forming weight broadcast group {self.gen} failed ({type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]})")
            return False
        self.key, self.handles = key, members
        log.info("weight broadcast group %d formed: learner rank 0 and %d rollout actor(s), %s", self.gen, len(actors), backend)
        return True

    def _fail(self, why: str) -> None:
        self.faults["weight_broadcast_failed"] += 1
        self.failures += 1
        self._last_key = None  # form again only when the next two versions see the same live actors (one may be restarting)
        self.off = self.failures >= self.cfg.max_failures
        if self.off:
            log.warning("%s; %d failures in a row (rollout.weight_sync.max_failures): every later version goes through the object store", why, self.failures)
        else:
            log.warning("%s; this version goes through the object store, and the group forms again once the live actors are stable", why)
        self.reset()
