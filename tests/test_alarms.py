from rlhflab.config import AlarmConfig
from rlhflab.diagnostics.alarms import AlarmMonitor, first_firings


def trace(
    n, proxy, disagreement, entropy=lambda t: 0.69, kl=lambda t: 0.01 * t, acc=lambda t: 0.85
):
    return [
        {
            "phase": "rlhf",
            "iteration": t,
            "env_steps": 1024 * t,
            "proxy_return": proxy(t),
            "true_return": 100.0,
            "rm_disagreement": disagreement(t),
            "entropy": entropy(t),
            "kl": kl(t),
            "rm_val_acc": acc(t),
            "rm_val_pairs": 200,
            "policy_loss": 0.01,
            "approx_kl": 0.01,
        }
        for t in range(1, n + 1)
    ]


def fired(cfg, records):
    monitor = AlarmMonitor(cfg)
    return [(r["iteration"], a["alarm"]) for r in records for a in monitor.check(r)]


def wiggle(t):
    return 0.01 * ((t * 7) % 5 - 2)  # deterministic noise in [-0.02, 0.02]


def test_proxy_rising_while_disagreement_leaves_its_early_band_fires():
    # over-optimisation: the proxy climbs; from iteration 15 the policy is where the ensemble
    # disagrees
    records = trace(
        30,
        proxy=lambda t: 2.0 * t,
        disagreement=lambda t: 0.08 + wiggle(t) + (0.12 if t >= 15 else 0.0),
    )
    alarms = fired(AlarmConfig(), records)
    assert alarms and {name for _, name in alarms} == {"proxy_vs_disagreement"}
    assert min(t for t, _ in alarms) == 17  # patience 3: iterations 15, 16, 17


def test_a_healthy_run_raises_no_alarm():
    # the proxy climbs while disagreement stays in its band and shrinks as labels arrive
    records = trace(
        60,
        proxy=lambda t: 2.0 * t,
        disagreement=lambda t: 0.08 + wiggle(t) - 0.0005 * t,
        entropy=lambda t: 0.69 - 0.004 * t,
    )
    assert fired(AlarmConfig(kl_budget=1.0), records) == []


def test_disagreement_without_a_rising_proxy_is_not_over_optimisation():
    records = trace(
        30,
        proxy=lambda t: -1.0 * t,
        disagreement=lambda t: 0.08 + wiggle(t) + (0.12 if t >= 15 else 0.0),
    )
    assert fired(AlarmConfig(), records) == []


def test_kl_budget_entropy_collapse_and_reward_model_accuracy_drop():
    flat = dict(proxy=lambda t: 0.0, disagreement=lambda t: 0.08)
    assert {n for _, n in fired(AlarmConfig(kl_budget=0.1), trace(20, **flat))} == {
        "kl_budget"
    }  # kl = 0.01·t passes 0.1 at t = 11
    assert fired(AlarmConfig(), trace(20, **flat)) == []  # no budget, no KL alarm
    collapse = trace(20, **flat, entropy=lambda t: 0.69 if t < 10 else 0.02)
    assert {n for _, n in fired(AlarmConfig(), collapse)} == {"entropy_collapse"}
    drop = trace(20, **flat, acc=lambda t: 0.9 if t < 10 else 0.7)
    assert [t for t, n in fired(AlarmConfig(), drop)][:1] == [12]
    small_drop = trace(20, **flat, acc=lambda t: 0.9 if t < 10 else 0.85)
    assert fired(AlarmConfig(), small_drop) == []


def test_a_resumed_monitor_continues_where_the_records_left_off():
    records = trace(
        30,
        proxy=lambda t: 2.0 * t,
        disagreement=lambda t: 0.08 + wiggle(t) + (0.12 if t >= 15 else 0.0),
    )
    whole = fired(AlarmConfig(), records)
    resumed = AlarmMonitor(AlarmConfig(), records[:16])
    assert [(r["iteration"], a["alarm"]) for r in records[16:] for a in resumed.check(r)] == [
        f for f in whole if f[0] > 16
    ]


def test_first_firings_names_each_alarm_once():
    records = [
        {"env_steps": 10, "iteration": 1, "alarms": [{"alarm": "kl_budget", "message": "m1"}]},
        {"env_steps": 20, "iteration": 2, "alarms": [{"alarm": "kl_budget", "message": "m2"}]},
    ]
    assert first_firings(records) == {
        "kl_budget": {"env_steps": 10, "iteration": 1, "message": "m1"}
    }
