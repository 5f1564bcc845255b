"""A workdir on a bucket: config, metrics and TensorBoard go through `etils.epath` (and tensorboardX's
own gs:// writer), tried here on `gs://` paths that epath's test mock maps onto a local folder."""

import os

import pytest
from etils import epath
from etils.epath import testing as epath_testing

from hybrid_jax.errors import DataError
from hybrid_jax.errors import CheckpointError
from hybrid_jax.storage.workdir import LineLog, Workdir
from hybrid_jax.training import metrics
from train_helpers import load_config


@pytest.fixture
def bucket(tmp_path):
    """`gs://bucket/...` paths stored under tmp_path/bucket while the test runs."""
    def local(p):
        p = os.fspath(p)
        return str(tmp_path / p[len("gs://"):]) if p.startswith("gs://") else p

    def one(orig, path, *a, **k):
        return orig(local(path), *a, **k)

    def two(orig, src, dst, *a, **k):
        return orig(local(src), local(dst), *a, **k)

    fns = {n: one for n in ("open", "exists", "isdir", "listdir", "makedirs", "mkdir", "remove", "rmtree",
                            "stat", "glob", "walk")}
    with epath_testing.mock_epath(**fns, rename=two, replace=two, copy=two):
        yield tmp_path / "bucket"


def test_config_round_trips_on_a_bucket(bucket):
    cfg = load_config("tiny")
    wd = Workdir("gs://bucket/run")
    assert str(wd) == "gs://bucket/run"
    wd.write_config(cfg)
    assert (bucket / "run" / "config.json").is_file()
    assert wd.model_config().to_dict() == cfg.model.to_dict()
    wd.check_same_model(cfg)
    cfg.model.global_transformer.layers += 1
    with pytest.raises(CheckpointError, match="different model config"):
        wd.check_same_model(cfg)


def test_a_bucket_workdir_has_no_lock(bucket):
    """Objects have no lock that a killed holder gives back: none is taken, and nothing is written."""
    wd = Workdir("gs://bucket/run")
    assert str(wd.lock_file) == "gs://bucket/run/train.lock"
    with wd.lock() as held, wd.lock() as again:
        assert held is False and again is False
    assert not (bucket / "run").exists()


def test_metrics_on_a_bucket_survive_a_resume(bucket, monkeypatch):
    seen = []
    class FakeEventFile:  # tensorboardX writes gs:// itself (google-cloud-storage): record the path
        def __init__(self, logdir):
            seen.append(str(logdir))
            self.logdir = logdir

        def add_scalars(self, *a):
            pass

        def close(self):
            pass

    monkeypatch.setattr(metrics, "EventFile", FakeEventFile)
    for logged in ({1: 9.0, 2: 8.0}, {2: 6.0, 3: 5.0}):  # the second run resumes after step 1
        w = metrics.MetricsWriter(Workdir("gs://bucket/run"), True)
        for step, loss in logged.items():
            w.write(step, {"loss": loss})
        w.close()
    assert seen == ["gs://bucket/run/tb"] * 2
    rows = metrics.read_metrics("gs://bucket/run")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 9.0), (2, 6.0), (3, 5.0)]
    assert len((bucket / "run" / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_while_logging_is_one_error_naming_the_file(tmp_path, monkeypatch):
    """/dev/full fails every write with ENOSPC, as a full disk does: metrics.jsonl, then TensorBoard's
    events (written in this thread, so a full disk cannot stall tensorboardX's queue)."""
    import tensorboardX.record_writer

    wd = Workdir(tmp_path / "run")
    wd.path.mkdir()
    os.symlink("/dev/full", wd.metrics_file)
    w = metrics.MetricsWriter(wd, True)
    with pytest.raises(OSError, match=f"^no space left on device while writing {wd.metrics_file}$"):
        w.write(1, {"loss": 1.0})
    w.close()
    os.remove(wd.metrics_file)
    monkeypatch.setattr(tensorboardX.record_writer, "open_file", lambda path: open("/dev/full", "wb"))
    w = metrics.MetricsWriter(wd, True)
    for call in (lambda: w.write(1, {"loss": 1.0}), w.close):  # the first write is flushed, then the rest
        with pytest.raises(OSError, match=f"^no space left on device while writing {wd.tensorboard_dir}$"):
            call()
    assert [r["step"] for r in metrics.read_metrics(str(wd.path))] == [1]


def test_write_errors_name_the_os_error():
    import errno

    from hybrid_jax.storage.workdir import write_error

    # What TensorStore raised on a full tmpfs while Orbax saved a step.
    ts = ValueError('RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/6.orbax-checkpoint-tmp/params.'
                    'orbax-checkpoint-tmp/_sharding": Failed writing: "/w/checkpoints/6.orbax-checkpoint-tmp/params.'
                    'orbax-checkpoint-tmp/_sharding.__lock": Failed to write 18397 bytes to file 22: No space left '
                    "on device [os_error_code='28']")
    wrapped = Exception("Encountered error while writing")
    wrapped.__cause__ = ts
    e = write_error(wrapped, "saving checkpoint step 6 to /w/checkpoints")
    assert str(e) == "no space left on device while saving checkpoint step 6 to /w/checkpoints"
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert str(write_error(OSError(errno.EDQUOT, "Disk quota exceeded"), "writing x")) == \
        "disk quota exceeded while writing x"
    assert str(write_error(RuntimeError("no reason\ngiven"), "writing x")) == "writing x failed (RuntimeError: no reason)"


def test_a_local_line_log_appends(tmp_path):
    path = epath.Path(tmp_path / "log.jsonl")
    for text in ("a\n", "b\n"):
        log = LineLog(path)
        assert not log.remote
        log.write(text)
        log.close()
    assert path.read_text() == "a\nb\n"


def test_a_corpus_on_a_bucket_reads_as_a_local_one(bucket, tmp_path):
    import ml_collections

    from hybrid_jax.data.pipeline import streams
    from train_helpers import write_corpus

    write_corpus(bucket / "corpus" / "sub", n_files=5)
    (bucket / "corpus" / "jsonl").mkdir()
    (bucket / "corpus" / "jsonl" / "docs.jsonl").write_text('{"text": "héllo"}\n{"text": "two"}\n')
    write_corpus(bucket / "heldout", n_files=2, seed=1)
    # Held-out files named apart: a hash-chosen split keys documents by their path, which differs here.
    node = dict(text_field="text", eval_fraction=0.3, seq_len=16)
    remote = streams(ml_collections.ConfigDict(dict(train="gs://bucket/corpus/*/*.*",
                                                    eval="gs://bucket/heldout/*.txt", **node)))
    local = streams(ml_collections.ConfigDict(dict(train=str(bucket / "corpus" / "*" / "*.*"),
                                                   eval=str(bucket / "heldout" / "*.txt"), **node)))
    assert len(remote[0]) == len(local[0]) > 5 * 400 and len(remote[1]) == len(local[1]) > 2 * 400
    assert (remote[0] == local[0]).all() and (remote[1] == local[1]).all()
    with pytest.raises(DataError, match="a bucket glob takes \\* but not \\*\\*"):
        streams(ml_collections.ConfigDict(dict(train="gs://bucket/corpus/**/*.txt", eval="", **node)))
