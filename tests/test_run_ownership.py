"""Only the session that started a run (or whoever holds its owner key, e.g. through the page's
address) may resume, delete or store an evaluation into it; every other session sees it
read-only; runs without an owner (trained with the CLI) and shipped checkpoints are never
changed from the app (`atld.runs.owner`, `atld.jobs.JobManager`, the Train and Evaluate pages)."""

from __future__ import annotations

import os

import pytest

from atld.config.train import TrainConfig
from atld.errors import ATLDError, CheckpointError
from atld.jobs import JobManager
from atld.runs.owner import OWNER_FILE, claim_owner, holds_owner_key, owner_digest


@pytest.fixture(scope="module")
def data(small_digits):
    return small_digits(150, 20)


def tiny(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(dataset="digits", method="natural", epochs=1, batch_size=50, eval_limit=0,
                                 device="cpu"), **overrides})


def _files(path):
    return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_only_the_owner_key_resumes_or_deletes_a_run(tmp_path, data):
    runs = tmp_path / "runs"
    manager = JobManager(runs, max_jobs=2)
    alice = manager.start("alice", tiny(), "alices", data=data)
    carol = manager.start("carol", tiny(), "carols", data=data)
    alice.wait(120)
    carol.wait(120)
    assert alice.status == "finished" and (runs / "alices" / OWNER_FILE).is_file()
    assert alice.key not in (runs / "alices" / OWNER_FILE).read_text()  # only a hash of the key is on disk
    before = _files(runs / "alices")
    wrong_keys = [None, "", alice.key[:-1], alice.key + "x", alice.key.upper(), carol.key, owner_digest(alice.key),
                  ["a list"], 12345]
    for key in wrong_keys:
        for attempt in (lambda k: manager.delete("alices", key=k), lambda k: manager.resume("bob", "alices", 3,
                                                                                               data=data, key=k)):
            with pytest.raises(CheckpointError, match="read-only here") as info:
                attempt(key)
            assert "\n" not in str(info.value)
    assert _files(runs / "alices") == before  # nothing changed
    job = manager.resume("alice", "alices", 2, data=data, key=alice.key)  # the owner (any session with the key)
    job.wait(120)
    assert job.status == "finished" and job.key == alice.key
    manager.delete("alices", key=alice.key)
    assert not (runs / "alices").exists() and (runs / "carols").exists()


def test_runs_without_an_owner_are_read_only_in_the_app(tmp_path, data, monkeypatch):
    from atld.train.trainer import train

    runs = tmp_path / "runs"
    train(tiny(), data=data, run_dir=runs / "from-cli", name="from-cli")  # as `python -m atld train`
    manager = JobManager(runs)
    for key in (None, "", "anything"):
        with pytest.raises(CheckpointError, match="read-only here"):
            manager.delete("from-cli", key=key)
        with pytest.raises(CheckpointError, match="read-only here"):
            manager.resume("bob", "from-cli", 3, data=data, key=key)
    # an owner file that is not a regular file of ours is no owner (a link to a file holding the right hash)
    (tmp_path / "elsewhere").write_text(owner_digest("guess") + "\n")
    os.symlink(tmp_path / "elsewhere", runs / "from-cli" / OWNER_FILE)
    assert not holds_owner_key(runs / "from-cli", "guess")
    with pytest.raises(CheckpointError, match="read-only here"):
        manager.delete("from-cli", key="guess")
    with pytest.raises(FileExistsError):  # a run has one owner: an existing owner file is never replaced
        claim_owner(runs / "from-cli", "mine-now")
    # shipped checkpoints: never, whatever key
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(runs))
    owned = manager.start("alice", tiny(), "shipped-like", data=data)
    owned.wait(120)
    with pytest.raises(ATLDError, match="not a run of this app's runs directory"):
        manager.delete("shipped-like", key=owned.key)
    assert (runs / "shipped-like" / "card.json").exists() and (runs / "from-cli" / "card.json").exists()


def test_another_browser_session_sees_the_run_read_only(app_env):
    from tests.support import open_page, start_app

    from atld.train.trainer import train

    train(tiny(), run_dir=app_env / "theirs", name="theirs")
    claim_owner(app_env / "theirs", "the-owner-key")  # started by another session, which holds this key
    stranger = open_page(start_app(), "train")
    assert "theirs (runs)" in stranger.sidebar.selectbox(key="atld_run").options  # listed for everyone
    assert not [s for s in stranger.selectbox if s.key == "train_own_run"]  # but not under "Your runs"
    assert not [b for b in stranger.button if b.key in ("train_delete", "train_resume")]
    wrong = start_app()
    wrong.query_params.update(run="theirs", key="not-the-key")
    wrong = open_page(wrong, "train")
    assert not [s for s in wrong.selectbox if s.key == "train_own_run"]
    owner = start_app()
    owner.query_params.update(run="theirs", key="the-owner-key")  # the page's address with the run's key
    owner = open_page(owner, "train")
    assert owner.selectbox(key="train_own_run").options == ["theirs"]
    owner.button(key="train_delete").click().run()
    owner.button(key="train_delete_yes").click().run()
    assert not owner.exception and not (app_env / "theirs").exists()
