"""Issue 16 (reliability), at the command line: bad bytes in a FASTA record, outputs that cannot
be written, records too long for the memory, mistyped file names, `refine -o DIR`, a damaged
checkpoint on --resume, leftovers of a killed run, hostile record ids, warnings, progress
output, SIGTERM and pickled weights.

Every case: one line of error (no traceback), the exit status, and nothing lost (the good
records of a batch complete and marked complete, nothing half-written looks complete).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("FOLDLITE_CACHE_DIR", str(Path(tempfile.gettempdir()) / "foldlite-test-cache"))

from conftest import tiny_weights  # noqa: E402
from foldlite import fileio, outputs, pipeline  # noqa: E402
from foldlite.commands import predict as predict_cmd  # noqa: E402
from foldlite.cli import main  # noqa: E402

UBQ = "MQIFVKTLTGKTITLEVEPS"
TRPCAGE = "NLYIQWLKDGGPSSGRPPPS"


@pytest.fixture(scope="module")
def weights() -> Path:
    return tiny_weights()


def _predict(args, weights, *extra):
    return main(["predict", *map(str, args), "--weights", str(weights), "--no-refine", *extra])


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_bytes_hostile_ids_and_notes_cost_only_their_record(weights, tmp_path, capsys):
    """Items 1, 8, 9: a Latin-1 byte, a pasted em dash and random bytes each fail their own
    record (name and position); an id with terminal escapes is printed and tabulated escaped;
    an all-Cyrillic/Greek id keeps its letters as folder name; a substitution note is one
    clean line; stderr (not a terminal) gets plain lines, no '\\r' progress updates."""
    fasta = tmp_path / "a.fasta"
    fasta.write_bytes(b">ok\n" + UBQ.encode() + b"\n"
                      b">latin1\nMQIFVKTLTG\xe9KTITLEVEPS\n"
                      b">dash\nMQIFVK\xe2\x80\x94TLTGKTITLEVEPS\n"
                      b">g\n\x8f\x00\xc3(\xff\xfe\x01AB\n"
                      b">\x1b[31mred\x1b[0m\nNLYIQWLKDGGPSSGRPPPSX\n"
                      + ">протеин_α\n".encode() + TRPCAGE[:15].encode() + b"\n")
    out = tmp_path / "out"
    assert _predict([fasta, "-o", out], weights) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\x1b" not in err and "\r" not in err
    assert "record 'latin1': position 11: byte 0xe9" in err
    assert "record 'dash': position 7: '—' (U+2014 EM DASH)" in err
    assert "record 'g': position 1: byte 0x8f" in err
    notes = [ln for ln in err.splitlines() if "read X at position(s) 21" in ln]
    assert len(notes) == 1 and ".py" not in notes[0] and "warn" not in notes[0]
    assert "[1/6] ok: 20 residues" in err  # plain progress lines
    rows = outputs.read_summary(out)
    assert [r["status"] for r in rows] == ["ok", "failed", "failed", "failed", "ok", "ok"]
    assert "\x1b" not in (out / "summary.tsv").read_text(encoding="utf-8")
    assert rows[4]["id"] == "\\x1b[31mred\\x1b[0m"
    assert rows[5]["dir"] == "протеин_α"
    for r in rows:
        assert outputs.is_complete(out / r["dir"]) == (r["status"] == "ok")
    scores = json.loads((out / rows[4]["dir"] / "scores.json").read_text(encoding="utf-8"))
    assert scores["id"] == "\x1b[31mred\x1b[0m"  # the original id
    scores = json.loads((out / "протеин_α" / "scores.json").read_text(encoding="utf-8"))
    assert scores["id"] == "протеин_α"


def test_outputs_checked_before_the_work_and_write_failures(weights, tmp_path, capsys,
                                                            monkeypatch):
    """Item 2 (and 7): an output folder that cannot be made or written is one line, before
    any work, with nothing created; a record whose outputs cannot be written fails alone; a
    summary that cannot be written stops cleanly, the complete records kept."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    calls = []
    monkeypatch.setattr(predict_cmd, "predict", lambda *a, **k: calls.append(1))
    for bad in (afile / "sub", afile, Path("/proc/foldlite-test"), Path("/proc")):
        if not Path("/proc").is_dir() and str(bad).startswith("/proc"):
            continue
        assert _predict([UBQ, "-o", bad], weights) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert str(bad) in line
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    monkeypatch.undo()

    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">first\n{UBQ}\n>second\n{TRPCAGE}\n")
    out = tmp_path / "out"
    real = outputs.write_record

    def disk_full_once(outdir, pred, **kw):
        if pred.id == "first":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(outdir, pred, **kw)

    monkeypatch.setattr(outputs, "write_record", disk_full_once)
    assert _predict([fasta, "-o", out, "--quiet"], weights) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "record 'first': cannot write its outputs" in err
    rows = outputs.read_summary(out)
    assert [r["status"] for r in rows] == ["failed", "ok"] and "No space" in rows[0]["message"]
    assert outputs.is_complete(out / "second") and not (out / "first").exists()
    monkeypatch.undo()

    def no_summary(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "write_summary", no_summary)
    assert _predict([fasta, "-o", out, "--quiet", "--overwrite"], weights) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "summary.tsv: cannot write the summary: No space left on device" in line
    assert outputs.is_complete(out / "first")
    assert [r["status"] for r in outputs.read_summary(out)] == ["failed", "ok"]  # the old one


def test_memory_is_checked_per_record_and_moves_with_chunking(weights, tmp_path, capsys):
    """Item 3: a record whose length bucket needs more than the memory is refused before it
    runs, with the length, the estimate, the limit and what to do; the others are predicted.
    Chunking lowers the estimate, and the estimate covers what XLA allocates."""
    import jax

    from foldlite.data.features import make_features
    from foldlite.model import make_model
    from foldlite.model.config import load_model_config
    from foldlite.model.memory import longest_length, network_bytes

    model = pipeline.load_predictor(weights)
    short = pipeline.memory_estimate(model, 20, refine=False)["network"]
    long_ = pipeline.memory_estimate(model, 700, refine=False)["network"]
    limit_gib = (short + long_) / 2 / 2**30
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">long\n{'A' * 700}\n>short\n{UBQ}\n")
    out = tmp_path / "out"
    assert _predict([fasta, "-o", out, "--memory-limit", f"{limit_gib:.4f}"], weights) == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "failed" in ln)
    assert ("record 'long': 700 residues (padded to 768) need an estimated" in line
            and "of --memory-limit; refused before running" in line and "--max-length" in line
            and "--chunk-size 4 (estimate" in line)
    assert [r["status"] for r in outputs.read_summary(out)] == ["failed", "ok"]

    small = load_model_config("small")
    for n in (256, 1024, 5120):
        assert network_bytes(small, n, 32) < network_bytes(small, n, 0)
    assert longest_length(small, 24 << 30, 32) > longest_length(small, 24 << 30, 0) >= 2048
    # the estimate is an upper bound of XLA's own account (tiny config, every path on)
    tiny = model.config
    feats = make_features(np.zeros(128, np.int32), pad_to=128)
    network = make_model(tiny)
    for chunk in (0, 16):
        fn = jax.jit(lambda p, f: network.apply(p, None, f, num_recycles=1,
                                                chunk_size=chunk).atom37)
        mem = fn.lower(model.params, feats).compile().memory_analysis()
        used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        assert used <= network_bytes(tiny, 128, chunk)


def test_mistyped_file_name_is_not_folded(weights, tmp_path, capsys, monkeypatch):
    """Item 4: a word that is no file and no unambiguous sequence is an error naming it;
    --sequence takes any sequence; the command says which it took."""
    monkeypatch.chdir(tmp_path)
    for word in ("proteins", "seqs.fasta", "data/in", "MKVLAAGIVX.fa"):
        assert _predict([word, "-o", "out"], weights) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert f"{word}: no such FASTA file" in line
    assert not (tmp_path / "out").exists()
    assert _predict(["-o", "out", "--sequence", "proteins"], weights) == 0
    assert "input: a sequence of 8 residues (record 'query')" in capsys.readouterr().err
    assert json.loads((tmp_path / "out/query/scores.json").read_text())["sequence"] == "PRKTEINS"
    assert _predict(["proteins", "-o", "out", "--sequence", "MKV"], weights) == 2
    assert "not both" in _one_line_error(capsys.readouterr().err)


def test_leftovers_and_no_folder_before_bad_weights_or_device(weights, tmp_path, capsys):
    """Item 7: a summary's temporary file left by a kill is removed by the next run; bad
    weights or an unavailable device are rejected before the output folder is made."""
    out = tmp_path / "out"
    assert _predict([UBQ, "-o", out, "--quiet"], weights) == 0
    stale = out / ".summary.tsv.k1ll3d.tmp"
    stale.write_text("id\tdir\n")
    assert _predict([UBQ, "-o", out, "--quiet"], weights) == 0
    assert sorted(p.name for p in out.iterdir()) == ["query", "summary.tsv"]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    for args in (["--weights", str(bad)], ["--weights", str(tmp_path / "none.npz")]):
        assert main(["predict", UBQ, "-o", str(tmp_path / "o2"), *args]) == 2
        _one_line_error(capsys.readouterr().err)
    import jax
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert _predict([UBQ, "-o", tmp_path / "o2", "--device", "gpu"], weights) == 2
        assert "no GPU" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "o2").exists()


def test_sigterm_exits_143_and_ctrl_c_130(weights, tmp_path, monkeypatch, capsys):
    """Item 9: SIGTERM stops the command as Ctrl-C does, with exit status 143; the record
    being predicted leaves nothing that looks complete."""
    real = outputs.write_record

    def killed(outdir, pred, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(outdir, pred, **kw)

    monkeypatch.setattr(outputs, "write_record", killed)
    assert _predict([UBQ, "-o", tmp_path / "out", "--quiet"], weights) == 143
    assert "terminated" in capsys.readouterr().err
    assert not (tmp_path / "out" / "query").exists()
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler is put back


def test_pickled_weights_and_damaged_checkpoints(tmp_path, capsys):
    """Items 6, 9: pickled arrays are refused with foldlite's reason (plain arrays only), not
    numpy's advice to load them unsafely; --resume skips a damaged newest checkpoint, naming
    it, and resumes from the newest intact one."""
    from foldlite.model.weights_io import load_weights
    from foldlite.train.checkpoint import CheckpointManager, TrainState

    pickled = tmp_path / "w.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    assert main(["predict", UBQ, "-o", str(tmp_path / "o"), "--weights", str(pickled)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "must be plain numeric arrays" in line and "unsafe" not in line
    with pytest.raises(Exception, match="never unpickled"):
        load_weights(pickled)

    def state(step):
        p = {"w": np.full((3,), float(step), np.float32)}
        return TrainState(params=p, opt_state=(), ema_params=p, step=np.int32(step),
                          rng=np.zeros(2, np.uint32))

    ckpts = CheckpointManager(tmp_path / "ckpt", keep=5)
    for step in (10, 20, 30):
        ckpts.save(state(step))
    ckpts.path(30).write_bytes(ckpts.path(30).read_bytes()[:200])  # truncated by a crash
    path, got, _ = ckpts.load_latest(state(0))
    err = capsys.readouterr().err
    assert path == ckpts.path(20) and int(got.step) == 20 and got.params["w"][0] == 20
    assert str(ckpts.path(30)) in err and f"resuming from the newest intact checkpoint {path}" in err
    for step in (10, 20):
        ckpts.path(step).write_bytes(b"garbage")
    with pytest.raises(Exception, match="no intact checkpoint"):
        ckpts.load_latest(state(0))
    assert fileio.remove_stale_temporaries(tmp_path, "none") == []
