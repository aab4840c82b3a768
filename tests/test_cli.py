import json


def test_help_lists_every_config_key_with_short_names(cli):
    out = cli("run", "--help").stdout
    for key in (
        "env.id",
        "feedback.labels",
        "env_steps",
        "seed",
        "baseline",
        "feedback.annotator.temperature",
        "feedback.annotator.error_rate",
        "policy.lr",
    ):
        assert key in out
    assert "short: labels" in out and "short: env" in out


def test_config_show_applies_short_and_dotted_overrides(cli):
    out = cli(
        "config", "show", "env=Pendulum-v1", "labels=350", "temperature=0.5", "policy.lr=0.01"
    ).stdout
    assert (
        "id: Pendulum-v1" in out
        and "labels: 350" in out
        and "temperature: 0.5" in out
        and "lr: 0.01" in out
    )


def test_unknown_env_id_is_named(cli):
    r = cli("run", "env=CartPol-v1")
    assert r.returncode != 0
    assert (
        "unknown env id 'CartPol-v1'" in r.stderr and "CartPole-v1" in r.stderr
    )  # with a suggestion


def test_unknown_config_key_is_named(cli):
    r = cli("run", "policy.learning_rate=3")
    assert r.returncode != 0 and "unknown config key 'policy.learning_rate'" in r.stderr


def test_unknown_key_in_a_config_file_is_named(cli, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("feedback:\n  labelz: 3\n")
    r = cli("run", "--config", str(path))
    assert r.returncode != 0 and "feedback.labelz" in r.stderr and str(path) in r.stderr


def test_bad_value_is_named(cli):
    r = cli("run", "labels=many")
    assert r.returncode != 0 and "feedback.labels" in r.stderr and "many" in r.stderr
    r = cli("run", "feedback.annotator.error_rate=1.5")
    assert r.returncode != 0 and "error_rate" in r.stderr


def test_config_that_does_not_parse_names_file_and_line(cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("env:\n  id: CartPole-v1\nfeedback: [labels: 3\nseed: 1\n")
    r = cli("run", "--config", str(path))
    assert r.returncode != 0
    assert f"{path}:4" in r.stderr and "does not parse" in r.stderr


def test_resume_of_a_directory_that_is_not_a_run(cli, tmp_path):
    r = cli("run", "--resume", str(tmp_path))
    assert r.returncode != 0 and "not a run directory" in r.stderr


def test_a_small_run_writes_the_run_directory(cli, tmp_path):
    out = tmp_path / "run"
    r = cli("run", "--out", str(out), "env_steps=3000", "labels=30", "eval_episodes=4")
    assert r.returncode == 0, r.stderr
    assert "true return" in r.stdout and "PPO on the true reward" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert {"task", "labels", "env_steps", "seed", "wall_seconds"} <= summary.keys()
    assert set(summary["true_return"]) == {"rlhf", "true_reward_baseline", "random"}
    assert summary["labels"] == 30
    assert (
        (out / "config.yaml").exists()
        and (out / "checkpoints" / "latest.pt").exists()
        and (out / "feedback.db").exists()
    )
    phases = {
        json.loads(line)["phase"] for line in (out / "metrics.jsonl").read_text().splitlines()
    }
    assert phases == {"rlhf", "baseline"}


def test_annotators_and_feedback_commands(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    link = cli("annotators", "add", "alice", str(run), "--url", "http://127.0.0.1:9000")
    assert link.returncode == 0, link.stderr
    assert link.stdout.startswith("sign-in link (one use): http://127.0.0.1:9000/login?code=")
    dup = cli("annotators", "add", "alice", str(run))
    assert dup.returncode != 0 and "already exists" in dup.stderr
    assert "alice" in cli("annotators", "list", str(run)).stdout
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n')
    assert cli("feedback", "import", str(run), str(good), "--format", "trl").returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "p", "chosen": "c", "rejected": "r"}\n'
        '{"prompt": "p", "chosen": 3, "rejected": "r"}\n'
    )
    r = cli("feedback", "import", str(run), str(bad), "--format", "trl")
    assert r.returncode != 0 and f"{bad}:2: field 'chosen' must be a string" in r.stderr
    out = cli("feedback", "export", str(run), "--format", "hh")
    assert out.returncode == 0
    assert json.loads(out.stdout) == {
        "chosen": "\n\nHuman: p\n\nAssistant: c",
        "rejected": "\n\nHuman: p\n\nAssistant: r",
    }
    empty = cli("feedback", "export", str(run), "--format", "segments")
    assert empty.returncode == 1 and "wrote 0 records" in empty.stderr and empty.stdout == ""
    missing = cli("label", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "no such run directory" in missing.stderr


def test_a_new_run_refuses_a_directory_that_holds_another_run(tmp_path, cli):
    out = tmp_path / "run"
    assert (
        cli("run", "--out", str(out), "env_steps=2048", "labels=10", "eval_episodes=2").returncode
        == 0
    )
    before = (out / "feedback.db").read_bytes()
    r = cli("run", "--out", str(out), "env_steps=2048", "labels=10")
    assert r.returncode == 1 and "already holds a run" in r.stderr and "--resume" in r.stderr
    assert (out / "feedback.db").read_bytes() == before  # nothing touched
    text = cli("run", "--config", "examples/text/reviews.yaml", "--out", str(out))
    assert text.returncode == 1 and "already holds a run" in text.stderr
