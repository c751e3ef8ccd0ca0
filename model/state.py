"""The model's state variables and its configuration (revision, defects, bounds).

Records follow SPEC §1: one instance row, a bounded pool of VMM slots and of migration slots,
the provisioning resource row and its collection counter, one sled reservation per VMM, the
network-config pointer; then the sled-agents' own view of each VMM and migration side, the
one report per VMM that is in flight, and one block of variables per saga slot (program
counter, mode and the outputs recorded in its saga log).

Slot references (`i_active`, `st_vmm.0`, ...) hold a slot number or `NONE`. Lock ids are
small integers handed out by the `next_uuid` counter, so they are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .vocab import MUTANTS, InstanceState, check_mutants, check_revision

NONE = 7  # "no slot" for 3-bit slot references
REF_BITS = 3
ENUM_BITS = 4
GEN_BITS = 6
COUNTER_BITS = 6  # the provisioning counter; read as a signed number

# saga modes; STUCK only with the opt-in fault class `Config.stuck_undos`
IDLE, FWD, UNWIND, STUCK = 0, 1, 2, 3

# network-config operations carried by an update saga
NET_NONE, NET_DELETE, NET_UPDATE = 0, 1, 2


@dataclass(frozen=True)
class Config:
    """What to check: the protocol revision, the defects switched on, and the pool sizes."""

    revision: str = "baseline"
    mutants: tuple[str, ...] = ()
    vmms: int = 3
    migrations: int = 2
    start_sagas: int = 2
    migrate_sagas: int = 2
    update_parents: int = 2
    update_children: int = 2
    nexus_replicas: int = 2
    ambiguous_failures: bool = False  # opt-in fault class: effect taken, failure reported
    stuck_undos: bool = False  # opt-in fault class: an undo meets an unhealthy sled, saga stuck

    def __post_init__(self) -> None:
        check_revision(self.revision)
        object.__setattr__(self, "mutants", check_mutants(self.mutants))
        for name in ("vmms", "migrations", "start_sagas", "migrate_sagas", "update_parents",
                     "update_children"):
            n = getattr(self, name)
            if not 1 <= n < NONE:
                raise ValueError(f"{name} must be between 1 and {NONE - 1}, got {n}")

    @property
    def rfd486(self) -> bool:
        return self.revision == "rfd486"

    def has(self, mutant: str) -> bool:
        assert mutant in MUTANTS, mutant
        return mutant in self.mutants

    def describe(self) -> str:
        m = ",".join(self.mutants) or "none"
        return (f"revision={self.revision} mutants={m} vmms={self.vmms} "
                f"migrations={self.migrations}"
                + (" ambiguous_failures=on" if self.ambiguous_failures else "")
                + (" stuck_undos=on" if self.stuck_undos else ""))


@dataclass(frozen=True)
class Var:
    name: str
    kind: str  # "bool" | "enum" | "ref" | "gen" | "counter"

    @property
    def width(self) -> int:
        return {"bool": 1, "enum": ENUM_BITS, "ref": REF_BITS, "gen": GEN_BITS,
                "counter": COUNTER_BITS}[self.kind]


@dataclass
class Layout:
    """All state variables of one configuration, in a fixed order."""

    cfg: Config
    vars: list[Var] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, kind: str) -> None:
        self.vars.append(Var(name, kind))

    def add_slots(self, base: str, kind: str, n: int) -> None:
        self.sizes[base] = n
        for k in range(n):
            self.add(f"{base}.{k}", kind)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.vars]

    def kind(self, name: str) -> str:
        return self._kinds[name]

    def __post_init__(self) -> None:
        c = self.cfg
        # instance row (SPEC §1.1); time_deleted is state == Destroyed (SPEC §2.2)
        for n, k in (("i_state", "enum"), ("i_gen", "gen"), ("i_active", "ref"),
                     ("i_target", "ref"), ("i_mig", "ref"), ("i_updater", "gen"),
                     ("i_ugen", "gen"), ("i_net", "ref"), ("prov_row", "bool"),
                     ("prov_cnt", "counter"), ("next_uuid", "gen")):
            self.add(n, k)
        # VMM rows (SPEC §1.2), reservations (§1.4), sled-agent view (§2.1), reports (§2.5)
        for base, kind in (("v_alloc", "bool"), ("v_state", "enum"), ("v_gen", "gen"),
                           ("v_del", "bool"), ("v_res", "bool"), ("sa_state", "enum"),
                           ("sa_gen", "gen"), ("sa_min", "ref"), ("sa_mout", "ref"),
                           ("rb_state", "enum"), ("rb_gen", "gen")):
            self.add_slots(base, kind, c.vmms)
        # migration rows (SPEC §1.3) and the sled-agents' view of each side
        for base, kind in (("m_alloc", "bool"), ("m_src", "ref"), ("m_tgt", "ref"),
                           ("m_src_st", "enum"), ("m_src_gen", "gen"), ("m_tgt_st", "enum"),
                           ("m_tgt_gen", "gen"), ("m_del", "bool"), ("sa_msrc_st", "enum"),
                           ("sa_msrc_gen", "gen"), ("sa_mtgt_st", "enum"),
                           ("sa_mtgt_gen", "gen")):
            self.add_slots(base, kind, c.migrations)
        # sagas: create and delete (one slot each)
        for n in ("cr_mode", "cr_pc", "dl_mode", "dl_pc"):
            self.add(n, "enum")
        self.add("cr_rp", "bool")  # "replaying": the node ran, crashed, and runs again
        self.add("dl_rp", "bool")
        for base, kind in (("st_mode", "enum"), ("st_pc", "enum"), ("st_vmm", "ref"),
                           ("st_gen", "gen"), ("st_lid", "gen"), ("st_lgen", "gen"), ("st_rp", "bool")):
            self.add_slots(base, kind, c.start_sagas)
        for base, kind in (("mg_mode", "enum"), ("mg_pc", "enum"), ("mg_vmm", "ref"),
                           ("mg_mig", "ref"), ("mg_src", "ref"), ("mg_rp", "bool")):
            self.add_slots(base, kind, c.migrate_sagas)
        for base, kind in (("up_mode", "enum"), ("up_pc", "enum"), ("up_lid", "gen"),
                           ("up_locked", "bool"), ("up_lgen", "gen"), ("up_child", "ref"),
                           ("up_rp", "bool")):
            self.add_slots(base, kind, c.update_parents)
        for base, kind in (("uc_mode", "enum"), ("uc_pc", "enum"), ("uc_parent", "ref"),
                           ("uc_lid", "gen"), ("uc_lgen", "gen"), ("uc_plid", "gen"),
                           ("uc_plgen", "gen"), ("uc_nstate", "enum"), ("uc_ngen", "gen"),
                           ("uc_nact", "ref"), ("uc_ntgt", "ref"), ("uc_nmig", "ref"),
                           ("uc_dact", "ref"), ("uc_dtgt", "ref"), ("uc_deprov", "bool"),
                           ("uc_netop", "enum"), ("uc_netk", "ref"), ("uc_rp", "bool"),
                           ("uc_fresh", "bool")):
            self.add_slots(base, kind, c.update_children)
        self._kinds = {v.name: v.kind for v in self.vars}

    def empty_state(self) -> dict[str, int | bool]:
        """Every record absent, every saga idle, every reference NONE."""
        s: dict[str, int | bool] = {}
        for v in self.vars:
            if v.kind == "bool":
                s[v.name] = False
            elif v.kind == "ref":
                s[v.name] = NONE
            else:
                s[v.name] = 0
        return s

    def fresh_state(self) -> dict[str, int | bool]:
        """Right after CREATE_INSTANCE_RECORD (SPEC §4.11): Creating, gen 1, lock gen 1,
        with the create saga about to run MOVE_TO_STOPPED."""
        s = self.empty_state()
        s["i_state"] = int(InstanceState.CREATING)
        s["i_gen"] = 1
        s["i_ugen"] = 1
        s["next_uuid"] = 1
        s["cr_mode"] = FWD
        s["cr_pc"] = 1
        return s
