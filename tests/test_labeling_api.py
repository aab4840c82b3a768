"""The labeling app's JSON API, over real HTTP against `rlhflab label` in its own process."""

import json
import threading
import time

import httpx
import pytest
from labeling import AppProcess, make_run, seg

from rlhflab.feedback.exchange import export_records, import_jsonl
from rlhflab.feedback.store import FeedbackStore


@pytest.fixture
def app(tmp_path):
    run, store, tokens = make_run(tmp_path)
    server = AppProcess(run.path).start()
    yield server, store, tokens
    server.kill()


def answer(client, choice="left"):
    nxt = client.post("/api/next")
    assert nxt.status_code == 200, nxt.text
    q = nxt.json()
    r = client.post(
        "/api/answer", json={"query_id": q["query_id"], "choice": choice, "lease": q["lease"]}
    )
    assert r.status_code == 201, r.text
    return q, r.json()["judgement_id"]


def test_next_answer_and_orientation(app):
    server, store, tokens = app
    ids = [store.add_query(seg(i), seg(i + 10)) for i in range(3)]
    alice = server.client(tokens["alice"])
    assert alice.get("/api/me").json() == {
        "name": "alice",
        "admin": False,
        "done": 0,
        "open": 3,
        "run_state": "running",
    }
    q1 = alice.post("/api/next").json()
    assert q1["query_id"] == ids[0] and q1["kind"] == "segments" and len(q1["items"]) == 2
    assert alice.post("/api/next").json()["query_id"] == ids[0]  # the live lease is returned again
    body = {"query_id": ids[0], "choice": "left", "lease": q1["lease"]}
    jid = alice.post("/api/answer", json=body).json()["judgement_id"]
    row = store.judgement_row(jid)
    # "left" was the side shown on the left: stored as right when the pair was shown swapped
    assert row.label == ("right" if row.shown_swapped else "left")
    assert row.seconds is not None and row.seconds >= 0
    for _ in range(2):
        answer(alice, "equal")
    assert alice.post("/api/next").status_code == 204
    mine = alice.get("/api/judgements").json()
    assert [j["label"] for j in mine] == [row.label, "equal", "equal"] and alice.get(
        "/api/me"
    ).json()["done"] == 3


def test_display_order_is_randomised_and_recorded(app):
    server, store, tokens = app
    for i in range(40):
        store.add_query(seg(i), seg(-i - 1))
    alice = server.client(tokens["alice"])
    swapped = []
    for _ in range(40):
        _, jid = answer(alice, "left")
        swapped.append(store.judgement_row(jid).shown_swapped)
    assert 5 < sum(swapped) < 35  # both orders occur


def test_auth_401_and_403(app):
    server, store, tokens = app
    store.add_query(seg(0), seg(1))
    store.add_query(seg(2), seg(3))
    alice, bob, admin = (server.client(tokens[n]) for n in ("alice", "bob", "admin"))
    _, bobs = answer(bob)
    assert server.client(None).post("/api/next").status_code == 401
    assert server.client("not-a-token").get("/api/me").status_code == 401
    assert alice.get(f"/api/judgements/{bobs}").status_code == 403
    assert alice.patch(f"/api/judgements/{bobs}", json={"choice": "right"}).status_code == 403
    assert alice.get("/api/admin/stats").status_code == 403
    bobs_query = store.query(store.judgement_row(bobs).query_id)
    assert (
        alice.get(f"/api/clips/{bobs_query.left_id}").status_code == 403
    )  # not a query alice leases or judged
    assert (
        alice.post("/api/admin/annotators", json={"name": "mallory", "admin": True}).status_code
        == 403
    )
    assert bob.get(f"/api/judgements/{bobs}").status_code == 200
    assert all(j["annotator"] == "alice" for j in alice.get("/api/judgements").json())
    assert admin.get("/api/admin/stats").status_code == 200
    new = admin.post("/api/admin/annotators", json={"name": "carol"}).json()
    assert new["link"].startswith(server.url + "/login?code=")  # the configured public URL
    assert server.client(new["token"]).get("/api/me").json()["name"] == "carol"


def test_bad_payloads_get_4xx_with_a_message_never_5xx(app):
    server, store, tokens = app
    qid = store.add_query(seg(0), seg(1))
    alice = server.client(tokens["alice"])
    lease = alice.post("/api/next").json()["lease"]
    bad = [
        b"{not json",
        b"[]",
        b"null",
        b'"text"',
        json.dumps({"query_id": "x", "choice": "left"}).encode(),
        json.dumps({"query_id": qid, "choice": "upwards"}).encode(),
        json.dumps({"query_id": qid}).encode(),
        json.dumps({"query_id": qid, "choice": "left", "extra": 1}).encode(),
        json.dumps({"query_id": 10**30, "choice": "left"}).encode(),
        json.dumps({"query_id": 999999, "choice": "left"}).encode(),
        json.dumps({"query_id": qid, "rating": 9}).encode(),
        json.dumps({"query_id": qid, "text": "x" * 30_000}).encode(),
        json.dumps({"query_id": qid, "choice": "left"}).encode(),  # no lease token
        json.dumps({"query_id": True, "choice": "left", "lease": lease}).encode(),
        json.dumps({"query_id": str(qid), "choice": "left", "lease": lease}).encode(),
        b"\xff\xfe\x00garbage",
    ]
    for body in bad:
        r = alice.post("/api/answer", content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body[:40], r.status_code, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]  # one error shape
    huge = alice.post(
        "/api/answer",
        content=b"{" + b" " * 400_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]
    assert alice.get("/api/judgements/notanumber").status_code == 422
    assert (
        alice.get("/api/clips/12345").status_code == 403
    )  # unknown and foreign segments look the same
    assert store.count_judgements() == 0  # nothing stored by any of it
    good = {"query_id": qid, "choice": "left", "lease": lease}
    assert alice.post("/api/answer", json=good).status_code == 201


@pytest.fixture
def short_lease(tmp_path):
    """One query on an app whose leases last 0.5 s: (store, alice's client, the query's id)."""
    run, store, tokens = make_run(tmp_path)
    qid = store.add_query(seg(0), seg(1))
    server = AppProcess(run.path, lease_seconds=0.5).start()
    yield store, server.client(tokens["alice"]), qid
    server.kill()


def test_an_answer_to_a_re_leased_query_is_refused(short_lease):
    _, alice, qid = short_lease
    first = alice.post("/api/next").json()
    time.sleep(0.7)  # the lease expires; asking again re-leases it, maybe in the other order
    second = alice.post("/api/next").json()
    assert first["query_id"] == second["query_id"] == qid and first["lease"] != second["lease"]
    stale = alice.post(
        "/api/answer", json={"query_id": qid, "choice": "left", "lease": first["lease"]}
    )
    assert stale.status_code == 409 and "leased again" in stale.json()["detail"]
    assert (
        alice.post(
            "/api/answer", json={"query_id": qid, "choice": "left", "lease": second["lease"]}
        ).status_code
        == 201
    )


def test_lease_expiry_and_reassignment(tmp_path):
    run, store, tokens = make_run(tmp_path)
    q1, q2 = store.add_query(seg(0), seg(1)), store.add_query(seg(2), seg(3))
    server = AppProcess(run.path, lease_seconds=1.0).start()
    try:
        alice, bob = server.client(tokens["alice"]), server.client(tokens["bob"])
        mine = alice.post("/api/next").json()
        assert mine["query_id"] == q1
        theirs = bob.post("/api/next").json()
        assert theirs["query_id"] == q2  # q1 is leased to alice
        body = {"query_id": q2, "choice": "left", "lease": theirs["lease"]}
        assert bob.post("/api/answer", json=body).status_code == 201
        time.sleep(1.3)  # alice's lease expires
        theirs = bob.post("/api/next").json()
        assert theirs["query_id"] == q1  # and the query is reassigned
        late = alice.post(
            "/api/answer", json={"query_id": q1, "choice": "right", "lease": mine["lease"]}
        )
        assert late.status_code == 409 and "not leased to you" in late.json()["detail"]
        body = {"query_id": q1, "choice": "right", "lease": theirs["lease"]}
        assert bob.post("/api/answer", json=body).status_code == 201
        assert [a for _, _, a, _ in store.judgements()] == ["bob", "bob"]
    finally:
        server.kill()


def test_overlap_and_agreement_stats(app):
    server, store, tokens = app
    for i in range(6):
        store.add_query(seg(i), seg(-i - 1), overlap=2)
    alice, bob, admin = (server.client(tokens[n]) for n in ("alice", "bob", "admin"))
    for _ in range(6):
        answer(alice, "left")
        answer(bob, "equal")
    assert (
        alice.post("/api/next").status_code == 204 and admin.post("/api/next").status_code == 204
    )  # overlap reached
    stats = admin.get("/api/admin/stats").json()
    assert stats["overlapping_queries"] == 6 and stats["judgements"] == 12
    assert stats["annotators"]["bob"]["tie_rate"] == 1.0
    assert (
        stats["annotators"]["alice"]["agreement_with_consensus"] == 0.0
    )  # bob said equal where alice chose a side
    assert stats["krippendorff_alpha"] is not None and stats["krippendorff_alpha"] < 0.5
    # Dawid–Skene reads strict answers only (bob's ties leave each query one), and no reward
    # model has estimated anyone yet
    assert stats["dawid_skene"] == {} and stats["reliability"] == []


def test_openapi_documents_the_api(app):
    server, _, _ = app
    spec = server.client(None).get("/openapi.json").json()
    assert {"/api/next", "/api/answer", "/api/judgements", "/api/admin/stats"} <= set(spec["paths"])
    assert "Answer" in spec["components"]["schemas"]


def test_text_queries_rank_rate_critique_correct_and_export(app, tmp_path):
    server, store, tokens = app
    pair = store.add_text_query("text_pair", "Say hi", ["Hello!", "Go away."])
    rank = store.add_text_query("ranking", "Count", ["one two three", "one three two", "three"])
    rate = store.add_text_query("rating", "Sum 2+2", ["4"])
    crit = store.add_text_query("critique", "Capital of France?", ["Lyon"])
    corr = store.add_text_query("correction", "Spell cat", ["kat"])
    alice = server.client(tokens["alice"])
    texts = {}
    for _ in range(5):
        q = alice.post("/api/next").json()
        shown = [it["text"] for it in q["items"]]
        if q["kind"] == "text_pair":
            body = {"choice": "left" if shown[0] == "Hello!" else "right"}
        elif q["kind"] == "ranking":
            truth = ["one two three", "one three two", "three"]
            body = {"ranking": sorted(range(3), key=lambda p: truth.index(shown[p]))}
        elif q["kind"] == "rating":
            body = {"rating": 7}
        elif q["kind"] == "critique":
            body = {"text": "Wrong: it is Paris."}
        else:
            body = {"text": "cat"}
        texts[q["kind"]] = q["prompt"]
        body |= {"query_id": q["query_id"], "lease": q["lease"]}
        assert alice.post("/api/answer", json=body).status_code == 201
    assert set(texts) == {"text_pair", "ranking", "rating", "critique", "correction"}
    assert export_records(store, "trl") == [
        {"prompt": "Say hi", "chosen": "Hello!", "rejected": "Go away."}
    ]
    assert export_records(store, "hh") == [
        {
            "chosen": "\n\nHuman: Say hi\n\nAssistant: Hello!",
            "rejected": "\n\nHuman: Say hi\n\nAssistant: Go away.",
        }
    ]
    assert export_records(store, "rankings") == [
        {"prompt": "Count", "responses": ["one two three", "one three two", "three"]}
    ]
    assert export_records(store, "ratings") == [{"prompt": "Sum 2+2", "response": "4", "rating": 7}]
    assert export_records(store, "critiques")[0]["critique"] == "Wrong: it is Paris."
    assert export_records(store, "corrections")[0]["correction"] == "cat"
    assert {pair, rank, rate, crit, corr} == {j.query_id for j in store.judgement_rows("alice")}


@pytest.fixture(params=["sqlite", "postgres"])
def served(request):
    """(store URL, `rlhflab label` arguments): the run's SQLite file behind one app process, or
    a PostgreSQL database behind two app workers."""
    if request.param == "sqlite":
        return None, []
    url = request.getfixturevalue("pg_url")
    return url, ["--store", url, "--workers", "2"]


def test_twenty_concurrent_annotators(tmp_path, served):
    """20 annotators × 50 judgements over HTTP: exactly 1000 stored, none duplicated, none over
    overlap."""
    url, extra = served
    names = [f"a{i:02d}" for i in range(20)]
    run, store, tokens = make_run(tmp_path, names, url)
    for i in range(600):
        store.add_text_query("text_pair", f"prompt {i}", [f"x{i}", f"y{i}"], overlap=2)
    server = AppProcess(run.path, extra=extra).start()
    acknowledged, errors = [], []
    deadline = time.time() + 240

    def work(name):
        client = server.client(tokens[name])
        done = 0
        while done < 50 and time.time() < deadline:
            nxt = client.post("/api/next")
            if nxt.status_code != 200:
                errors.append((name, nxt.status_code))
                return
            q = nxt.json()
            r = client.post(
                "/api/answer",
                json={"query_id": q["query_id"], "choice": "left", "lease": q["lease"]},
            )
            if r.status_code == 201:
                acknowledged.append(r.json()["judgement_id"])
                done += 1
            else:
                errors.append((name, r.status_code, r.text))
                return

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        server.kill()
    assert errors == []
    rows = store.judgements()
    assert len(rows) == len(acknowledged) == 1000
    assert len({(q, a) for _, q, a, _ in rows}) == 1000  # no annotator judged a query twice
    per_query = {}
    for _, q, _, _ in rows:
        per_query[q] = per_query.get(q, 0) + 1
    assert max(per_query.values()) <= 2


def test_judgements_acknowledged_before_sigkill_survive_a_restart(tmp_path, served):
    url, extra = served
    run, store, tokens = make_run(tmp_path, store_url=url)
    for i in range(400):
        store.add_text_query("text_pair", f"p{i}", ["a", "b"])
    server = AppProcess(run.path, extra=extra).start()
    acknowledged = []
    stop = threading.Event()

    def stream():
        client = server.client(tokens["alice"])
        while not stop.is_set():
            try:
                q = client.post("/api/next").json()
                r = client.post(
                    "/api/answer",
                    json={"query_id": q["query_id"], "choice": "right", "lease": q["lease"]},
                )
                if 200 <= r.status_code < 300:
                    acknowledged.append(r.json()["judgement_id"])
            except Exception:  # noqa: BLE001 - the server died mid-request: never acknowledged
                return

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.time() + 60
    while len(acknowledged) < 40 and time.time() < deadline:
        time.sleep(0.02)
    server.kill(9)
    stop.set()
    t.join(timeout=30)
    assert len(acknowledged) >= 40
    restarted = AppProcess(run.path, port=server.port, extra=extra).start()
    try:
        mine = {j["id"] for j in restarted.client(tokens["alice"]).get("/api/judgements").json()}
        assert set(acknowledged) <= mine
    finally:
        restarted.kill()


def test_postgres_restarted_under_load_loses_no_acknowledged_judgement(tmp_path, postgres_server):
    """The database restarts (immediate: as after a crash) while annotators answer through two
    app workers: every acknowledged judgement is there after, and answering resumes without
    restarting the app."""
    url = postgres_server.new_database()
    run, store, tokens = make_run(tmp_path, store_url=url)
    for i in range(400):
        store.add_text_query("text_pair", f"p{i}", ["a", "b"])
    server = AppProcess(run.path, extra=["--store", url, "--workers", "2"]).start()
    acknowledged: list[int] = []
    stop = threading.Event()

    def stream():
        client = server.client(tokens["alice"])
        while not stop.is_set():
            try:
                q = client.post("/api/next")
                if q.status_code != 200:
                    time.sleep(0.05)  # the database is away: 500 or 503, never acknowledged
                    continue
                body = {"query_id": q.json()["query_id"], "choice": "left"}
                r = client.post("/api/answer", json={**body, "lease": q.json()["lease"]})
                if r.status_code == 201:
                    acknowledged.append(r.json()["judgement_id"])
            except httpx.TransportError:
                time.sleep(0.05)

    t = threading.Thread(target=stream)
    t.start()
    try:
        deadline = time.time() + 60
        while len(acknowledged) < 20 and time.time() < deadline:
            time.sleep(0.02)
        postgres_server.restart("immediate")
        before = len(acknowledged)
        while len(acknowledged) < before + 20 and time.time() < deadline + 60:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(timeout=30)
        server.kill()
    assert before >= 20 and len(acknowledged) >= before + 20  # answering resumed
    assert set(acknowledged) <= {j for j, *_ in FeedbackStore(url).judgements()}


def test_import_validates_every_line_and_keeps_what_was_stored(tmp_path, store_url):
    _run, store, _ = make_run(tmp_path, store_url=store_url)
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"})
        + "\n"
        + json.dumps(
            {
                "prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            }
        )
        + "\n"
    )
    assert import_jsonl(store, good, "trl") == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"})
        + "\n"
        + json.dumps({"prompt": "p", "chosen": "c"})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'rejected' is missing"):
        import_jsonl(store, bad, "trl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yo"}\n{oops\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:1: field 'rejected'"):
        import_jsonl(store, broken, "hh")
    assert store.count_judgements() == 2  # the failed imports wrote nothing
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        json.dumps(
            {
                "chosen": "\n\nHuman: hi\n\nAssistant: hello",
                "rejected": "\n\nHuman: hi\n\nAssistant: go",
            }
        )
        + "\n"
    )
    import_jsonl(store, hh, "hh")
    assert export_records(store, "trl")[-1] == {
        "prompt": "\n\nHuman: hi",
        "chosen": "hello",
        "rejected": "go",
    }
    ratings = tmp_path / "r.jsonl"
    ratings.write_text(json.dumps({"prompt": "p", "response": "r", "rating": 8}) + "\n")
    with pytest.raises(
        ValueError, match=r"r.jsonl:1: field 'rating' must be an integer from 1 to 7"
    ):
        import_jsonl(store, ratings, "ratings")


# -- issue 11: the hardened API -------------------------------------------------------------
def lease_one(client):
    q = client.post("/api/next")
    assert q.status_code == 200, q.text
    return q.json()


def test_the_lease_token_is_required(app):
    server, store, tokens = app
    qid = store.add_query(seg(0), seg(1))
    alice = server.client(tokens["alice"])
    q = lease_one(alice)
    r = alice.post("/api/answer", json={"query_id": qid, "choice": "left"})
    assert r.status_code == 422 and "lease" in r.json()["detail"]
    assert r.json()["errors"][0]["loc"] == ["body", "lease"]
    wrong = alice.post("/api/answer", json={"query_id": qid, "choice": "left", "lease": "0" * 16})
    assert wrong.status_code == 409
    assert store.count_judgements() == 0
    ok = alice.post("/api/answer", json={"query_id": qid, "choice": "left", "lease": q["lease"]})
    assert ok.status_code == 201


def test_a_late_answer_after_expiry_gets_409_even_when_not_re_leased(short_lease):
    store, alice, qid = short_lease
    q = lease_one(alice)
    time.sleep(0.8)
    late = alice.post("/api/answer", json={"query_id": qid, "choice": "left", "lease": q["lease"]})
    assert late.status_code == 409 and "expired" in late.json()["detail"]
    assert store.count_judgements() == 0


def test_types_are_strict(app):
    server, store, tokens = app
    rank = store.add_text_query("ranking", "p", ["a", "b", "c", "d"])
    rate = store.add_text_query("rating", "p", ["a"])
    alice, admin = server.client(tokens["alice"]), server.client(tokens["admin"])
    for _ in range(2):
        q = lease_one(alice)
        base = {"query_id": q["query_id"], "lease": q["lease"]}
        if q["query_id"] == rank:
            bad = alice.post("/api/answer", json=base | {"ranking": [True, False, 2, 3]})
            good = base | {"ranking": [0, 1, 2, 3]}
        else:
            bad = alice.post("/api/answer", json=base | {"rating": True})
            assert alice.post("/api/answer", json=base | {"rating": 5.5}).status_code == 422
            good = base | {"rating": 5}
        assert bad.status_code == 422, bad.text
        assert alice.post("/api/answer", json=good).status_code == 201
    assert {r.query_id for r in store.judgement_rows()} == {rank, rate}
    yes = admin.post("/api/admin/annotators", json={"name": "mallory", "admin": "yes"})
    assert yes.status_code == 422 and store.annotator("mallory") is None
    assert admin.post("/api/admin/annotators", json={"name": 7}).status_code == 422


def test_malformed_critiques_and_ratings_are_refused_and_nothing_is_stored(app):
    server, store, tokens = app
    store.add_text_query("critique", "Capital of France?", ["Lyon"])
    alice = server.client(tokens["alice"])
    q = lease_one(alice)
    base = {"query_id": q["query_id"], "lease": q["lease"]}
    blank = alice.post("/api/answer", json=base | {"text": "   "})
    assert blank.status_code == 409 and "non-empty 'text'" in blank.json()["detail"]
    long = alice.post("/api/answer", json=base | {"text": "x" * 20_001})
    assert long.status_code == 422 and long.json()["errors"][0]["loc"] == ["body", "text"]
    rating = alice.post("/api/answer", json=base | {"rating": 5})  # a rating for a critique
    assert rating.status_code == 409
    assert store.count_judgements() == 0
    ok = alice.post("/api/answer", json=base | {"text": "Wrong: it is Paris."})
    assert ok.status_code == 201 and store.count_judgements() == 1


def test_disable_rotate_and_demote_take_effect_at_once(app, cli):
    server, store, tokens = app
    alice, admin = server.client(tokens["alice"]), server.client(tokens["admin"])
    assert alice.get("/api/me").status_code == 200  # the server has seen alice's token
    r = cli("annotators", "disable", "alice", str(server.run_dir))
    assert r.returncode == 0, r.stderr
    assert alice.get("/api/me").status_code == 401  # at once: no cache outlives the store
    store.set_disabled("alice", False)
    assert alice.get("/api/me").status_code == 200
    r = cli("annotators", "rotate", "alice", str(server.run_dir))
    assert r.returncode == 0, r.stderr
    assert alice.get("/api/me").status_code == 401
    new_token = r.stdout.split("Bearer …): ")[1].strip()
    assert server.client(new_token).get("/api/me").json()["name"] == "alice"
    assert admin.get("/api/admin/stats").status_code == 200
    store.set_admin("admin", False)  # demoted in the store: no admin powers from now on
    assert (
        admin.post("/api/admin/annotators", json={"name": "eve", "admin": True}).status_code == 403
    )
    assert store.annotator("eve") is None


def test_text_queries_have_no_segments_404_never_500(app):
    server, store, tokens = app
    qid = store.add_text_query("text_pair", "p", ["a", "b"])
    alice = server.client(tokens["alice"])
    lease_one(alice)
    r = alice.get(f"/api/queries/{qid}/segments")
    assert r.status_code == 404 and "text_pair" in r.json()["detail"]


def test_sign_in_by_one_time_code_and_post(app):
    server, store, tokens = app
    code = store.login_code("alice")
    anon = server.client(None)
    form = anon.get(f"/login?code={code}")
    assert form.status_code == 200 and 'method="post"' in form.text
    assert "set-cookie" not in form.headers  # a GET (a link preview, say) signs nobody in
    r = anon.post("/login", data={"code": code, "next": "/admin"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Secure" not in cookie
    assert tokens["alice"] not in cookie  # the cookie holds a session, never the token
    assert anon.get("/api/me").json()["name"] == "alice"
    again = server.client(None).post("/login", data={"code": code}, follow_redirects=False)
    assert again.status_code == 401  # one use
    evil = server.client(None).post(
        "/login",
        data={"token": tokens["bob"], "next": "https://evil.example"},
        follow_redirects=False,
    )
    assert evil.status_code == 303 and evil.headers["location"] == "/"
    store.set_disabled("alice")
    assert anon.get("/api/me").status_code == 401  # the session ended with the account


def test_secure_cookies_and_links_from_the_public_url(tmp_path):
    run, store, tokens = make_run(tmp_path)
    server = AppProcess(
        run.path, extra=["--secure-cookies", "--public-url", "https://label.example/"]
    )
    server.start()
    try:
        code = store.login_code("alice")
        r = server.client(None).post("/login", data={"code": code}, follow_redirects=False)
        assert "Secure" in r.headers["set-cookie"]
        admin = server.client(tokens["admin"])
        new = admin.post(
            "/api/admin/annotators", json={"name": "carol"}, headers={"host": "evil.example"}
        )
        assert new.json()["link"].startswith("https://label.example/login?code=")
    finally:
        server.kill()


def test_a_finished_run_withdraws_its_queries_and_says_so(app):
    server, store, tokens = app
    qid = store.add_query(seg(0), seg(1))
    store.add_query(seg(2), seg(3))
    alice = server.client(tokens["alice"])
    q = lease_one(alice)
    assert store.finish_run() == 2
    assert alice.get("/api/me").json()["run_state"] == "over"
    assert alice.post("/api/next").status_code == 204
    late = alice.post("/api/answer", json={"query_id": qid, "choice": "left", "lease": q["lease"]})
    assert late.status_code == 409
    assert store.count_judgements() == 0


def test_an_admin_relabel_is_audited(app):
    server, store, tokens = app
    store.add_query(seg(0), seg(1))
    _, jid = answer(server.client(tokens["bob"]), "left")
    before = store.judgement_row(jid).label
    admin = server.client(tokens["admin"])
    after = "equal"
    assert admin.patch(f"/api/judgements/{jid}", json={"choice": after}).status_code == 200
    log = admin.get("/api/admin/audit").json()
    assert log[-1]["actor"] == "admin" and log[-1]["subject"] == f"judgement {jid}"
    assert log[-1]["detail"] == {"annotator": "bob", "before": before, "after": after}
    assert server.client(tokens["alice"]).get("/api/admin/audit").status_code == 403


def test_every_status_is_documented_with_one_error_shape(app):
    server, _, _ = app
    spec = server.client(None).get("/openapi.json").json()
    ops = {(p, m): op for p, item in spec["paths"].items() for m, op in item.items()}
    answer_op = ops[("/api/answer", "post")]
    assert {"201", "401", "409", "413", "422"} <= set(answer_op["responses"])
    for (path, method), op in ops.items():
        assert "401" in op["responses"], (path, method)
        for status, resp in op["responses"].items():
            if status.startswith("4"):
                ref = resp["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (path, method, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    anon = server.client(None)
    assert anon.get("/favicon.ico").status_code == 200
    missing = anon.get("/api/nothing-here")
    assert missing.status_code == 404 and set(missing.json()) == {"detail", "errors"}
