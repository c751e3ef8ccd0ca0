"""Every action of the model for one configuration, in a fixed order.

The order is part of the model's identity: traces name actions by label, and the Z3 encoding
numbers them by position.
"""

from __future__ import annotations

from functools import lru_cache

from .abandoned_vmm_reaper import build_reaper
from .instance_create import build_create_saga
from .instance_delete import build_delete_saga
from .instance_migrate import build_migrate_saga
from .instance_request_state import build_request_state
from .instance_start import build_start_saga
from .instance_update import build_update_sagas, nexus_crash_actions
from .instance_updater import build_instance_updater
from .instance_watcher import build_instance_watcher
from .saga import Action, SagaDef, saga_actions
from .sled_agent import sled_agent_actions
from .state import Config, Layout


class Model:
    """The transition system of one configuration: its layout, sagas and actions."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.layout = Layout(cfg)
        create, create_api = build_create_saga(cfg)
        start, start_api = build_start_saga(cfg)
        migrate, migrate_api = build_migrate_saga(cfg)
        delete, delete_api = build_delete_saga(cfg)
        parent, child = build_update_sagas(cfg, self.layout)
        self.sagas: list[SagaDef] = [create, start, migrate, delete, parent, child]
        acts: list[Action] = []
        acts += start_api + migrate_api + delete_api + create_api
        acts += build_request_state(cfg)
        for sd in self.sagas:
            acts += saga_actions(sd, self.layout, cfg.ambiguous_failures, cfg.stuck_undos)
        acts += sled_agent_actions(cfg)
        acts += build_instance_updater(cfg)
        acts += build_reaper(cfg)
        acts += build_instance_watcher(cfg)
        acts += nexus_crash_actions(cfg)
        self.actions = acts
        self.by_label = {a.label: i for i, a in enumerate(acts)}
        if len(self.by_label) != len(acts):
            raise AssertionError("two actions share a label")

    def action_index(self, label: str) -> int:
        try:
            return self.by_label[label]
        except KeyError:
            raise KeyError(f"no action {label!r} in this model ({self.cfg.describe()})") from None


@lru_cache(maxsize=32)
def model_for(cfg: Config) -> Model:
    return Model(cfg)
