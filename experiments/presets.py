"""Named settings for every experiment at once: --preset=quick fits all six into
30 minutes of a 2-core CPU, --preset=full is for a GPU or a long run. A preset only
fills in flags the command line leaves alone; without one, each experiment uses its
own defaults (its module docstring says which)."""

_CPU_SCENES = dict(num_train=3000, epochs=8)
_MANY_SCENES = dict(num_train=20000, num_val=2000, num_test=10000, epochs=20, seeds=5)

PRESETS: dict[str, dict[str, dict]] = {
    "quick": {
        "joint_vs_separate": _CPU_SCENES,
        "network_size": _CPU_SCENES,
        "data_amount": dict(_CPU_SCENES, num_aux=["0", "2", "8", "all"]),
        "relatedness": dict(seeds=5),
        "missing_labels": _CPU_SCENES,
        "transfer_vs_mtl": _CPU_SCENES,
    },
    "full": {
        "joint_vs_separate": _MANY_SCENES,
        "network_size": _MANY_SCENES,
        "data_amount": dict(_MANY_SCENES, target_budgets=["25", "100", "400", "1600", "6400"]),
        "relatedness": dict(seeds=10, rhos=[str(r / 10) for r in range(11)]),
        "missing_labels": _MANY_SCENES,
        "transfer_vs_mtl": dict(_MANY_SCENES, b_budgets=["25", "100", "400", "1600", "6400"]),
    },
}
