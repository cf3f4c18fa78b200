"""Converters (one small sample per native layout), the data config, bad data, and the data CLI."""

import json
import logging
import subprocess
import sys

import pytest

from openrlhf_video.data import DataError, Skips, load_config, read_records, validate_record
from openrlhf_video.data.cli import main as data_main


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- converters
def test_temporal_r1_spans_become_seconds(tmp_path):
    src = write(tmp_path / "tr1.json", json.dumps([
        {"problem": "person opens the door", "solution": [0.25, 0.5], "video": "3MSZA.mp4",
         "video_length": 32.0, "dataset": "charades_train"},
    ]))  # fmt: skip
    [rec] = read_records(src, "temporal_r1")
    assert rec["task"] == "tvg" and rec["span"] == [8.0, 16.0] and rec["duration"] == 32.0
    assert rec["video"] == "3MSZA.mp4" and rec["question"] == "person opens the door"
    assert rec["source"] == "charades_train" and rec["options"] is None


def test_temporal_r1_items_without_video_length_take_it_from_the_video(tmp_path, monkeypatch):
    """Temporal-R1's charades_train items have none: its loader measures the video at train time."""
    from openrlhf_video.data import frames
    from openrlhf_video.data.frames import video_info
    from openrlhf_video.synthetic import make_video

    make_video(tmp_path / "videos" / "3MSZA.mp4", duration=6.0, fps=10)
    write(tmp_path / "tr1.json", json.dumps([
        {"problem": "person opens the door", "solution": [0.25, 0.5], "video": "3MSZA.mp4", "dataset": "charades_train"},
        *[{"problem": "person sits down", "solution": [0.1, 0.2], "video": "gone.mp4", "dataset": "charades_train"}] * 2,
    ]))  # fmt: skip
    config = write(tmp_path / "data.yaml", "datasets:\n  - {path: tr1.json, format: temporal_r1, video_root: videos}\n")
    skips = Skips(limit=2)
    looked_up = []
    monkeypatch.setattr(frames, "video_info", lambda video: looked_up.append(video) or video_info(video))
    [rec] = load_config(config, skips=skips)
    assert (
        rec["span"] == [1.5, 3.0] and rec["duration"] == 6.0 and rec["video"] == str(tmp_path / "videos" / "3MSZA.mp4")
    )
    gone = tmp_path / "videos" / "gone.mp4"
    assert [str(e) for e in skips.problems] == [
        f"{tmp_path / 'tr1.json'}: item {i}: no video_length, and the video gives none: {gone}: video file not found"
        for i in (1, 2)
    ]
    assert len(looked_up) == 2  # once per video, also for the one that gives no length


def test_charades_sta_text_lines(tmp_path):
    src = write(
        tmp_path / "charades_sta_test.txt",
        "3MSZA 24.3 30.4##person turn a light on.\n\n3MSZA 0 6.9##person opening a door.\nAO8RW 2.1 8.5##a person is putting a book on a shelf.\n",
    )
    recs = read_records(src, "charades_sta")
    assert [r["id"] for r in recs] == ["charades_sta/3MSZA#0", "charades_sta/3MSZA#1", "charades_sta/AO8RW#0"]
    assert recs[0]["span"] == [24.3, 30.4] and recs[0]["duration"] is None  # read from the video later
    assert recs[0]["video"] == "3MSZA.mp4" and recs[0]["question"] == "person turn a light on."
    assert read_records(src, "charades_sta", video_ext="avi")[2]["video"] == "AO8RW.avi"


@pytest.mark.parametrize("fmt", ["charades_sta", "activitynet"])
def test_caption_json_layouts(tmp_path, fmt):
    src = write(tmp_path / "train.json", json.dumps({
        "v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 83.2]],
                          "sentences": [" A young woman is seen standing.", "She then begins dancing."]},
    }))  # fmt: skip
    first, second = read_records(src, fmt)
    assert first["id"] == f"{fmt}/v_QOlSCBRmfWY#0" and first["question"] == "A young woman is seen standing."
    assert first["span"] == [0.83, 19.86] and first["duration"] == 82.73 and first["video"] == "v_QOlSCBRmfWY.mp4"
    assert second["span"] == [17.37, 83.2]  # 0.47 s past the end: kept as annotated, as the slack allows


def test_nextgqa_options_answer_and_grounding(tmp_path):
    src = write(tmp_path / "val.csv", "video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
                "4010069381,1500,640,480,why did the boy pick up the ball,to throw it,6,CW,to eat it,to throw it,to hide,to clean it,to sit\n")  # fmt: skip
    write(
        tmp_path / "gsub_val.json",
        json.dumps({"4010069381": {"duration": 50.0, "location": {"6": [[1.2, 5.8], [9.0, 12.5]]}, "fps": 29.97}}),
    )
    write(tmp_path / "map_vid_vidorID.json", json.dumps({"4010069381": "1106/4010069381"}))
    [rec] = read_records(src, "nextgqa")
    assert rec["task"] == "gqa" and rec["answer"] == "B" and rec["options"][1] == "to throw it"
    assert rec["span"] == [1.2, 12.5] and rec["duration"] == 50.0  # one span covering both
    assert rec["segments"] == [[1.2, 5.8], [9.0, 12.5]]  # and each, for NExT-GQA's best-segment metrics
    with pytest.raises(DataError, match="segments"):
        validate_record(dict(rec, segments=[[0.5, 5.8]]), "x.jsonl:3")  # outside the span
    assert rec["video"] == "1106/4010069381.mp4" and rec["question"] == "why did the boy pick up the ball?"
    assert read_records(src, "nextgqa", video_ext=".mp4")[0]["video"] == "1106/4010069381.mp4"  # not "..mp4"
    # A quoted field may hold a line break: a problem below it still names its own line.
    with open(src, "a") as f:
        f.write(
            '4010069381,1500,640,480,"why did the boy\nrun",to hide,7,CW,to eat it,to throw it,to hide,to clean it,to sit\n'
        )
    with pytest.raises(DataError, match="val.csv:4: .*video 4010069381 question 7 has no grounding span"):
        read_records(src, "nextgqa")


@pytest.mark.parametrize("fmt, name, text", [
    ("charades_sta", "charades_sta_test.txt", "3MSZA 24.3 30.4##person turn a light on.\n"),
    ("nextgqa", "val.csv", "video_id,question,answer,qid,a0,a1,a2,a3,a4\n4010069381,why,b,6,a,b,c,d,e\n"),
    ("records", "r.jsonl", json.dumps({"id": "x", "task": "tvg", "video": "3MSZA.mp4", "question": "q?", "span": [1, 2]}) + "\n"),
    ("activitynet", "val_1.json", json.dumps({"3MSZA": {"duration": 9.0, "timestamps": [[1, 2]], "sentences": ["q"]}})),
])  # fmt: skip
def test_a_byte_order_mark_is_not_data(tmp_path, fmt, name, text):
    """Files saved by Windows editors start with U+FEFF: not part of the first video id or column."""
    write(tmp_path / "gsub_val.json", json.dumps({"4010069381": {"duration": 50.0, "location": {"6": [[1.2, 5.8]]}}}))
    src = tmp_path / name
    src.write_text("\ufeff" + text, encoding="utf-8")
    [rec] = read_records(src, fmt)
    assert rec["video"] in ("3MSZA.mp4", "4010069381.mp4")


def test_mvbench_candidates_answer_text_and_clip(tmp_path):
    src = write(tmp_path / "action_sequence.json", json.dumps([
        {"video": "ZS9XR.mp4", "question": "What did the person do first?", "candidates": ["Sat down.", "Opened the door."],
         "answer": "Opened the door.", "start": 3.5, "end": 12.0},
        {"video": "X1.mp4", "question": "What is shown?", "candidates": ["a cat", "a dog", "a car"], "answer": "a car"},
    ]))  # fmt: skip
    bounded, whole = read_records(src, "mvbench")
    assert bounded["task"] == "mcq" and bounded["answer"] == "B" and bounded["clip"] == [3.5, 12.0]
    assert whole["answer"] == "C" and whole["clip"] is None and whole["source"] == "mvbench/action_sequence"


# ---------------------------------------------------------------- the data config
def test_data_config_loads_several_formats_with_seeded_sampling(tmp_path, synthetic_data):
    write(tmp_path / "ann/charades.txt", "".join(f"V{i} 1 {2 + i}##event {i}\n" for i in range(10)))
    write(
        tmp_path / "ann/mv.json",
        json.dumps(
            [{"video": f"m{i}.mp4", "question": "q?", "candidates": ["x", "y"], "answer": "y"} for i in range(4)]
        ),
    )
    config = write(
        tmp_path / "data.yaml",
        f"""
seed: 3
datasets:
  - path: {synthetic_data / "records.jsonl"}
    video_root: {synthetic_data}
    sample: 0.5
  - path: ann/charades.txt
    format: charades_sta
    video_root: videos/charades
    sample: 4
  - path: ann/mv.json
    format: mvbench
""",
    )
    records = load_config(config)
    assert len(records) == 16 + 4 + 4
    assert all(r["video"].startswith(str(synthetic_data)) for r in records[:16])
    assert records[16]["video"].startswith(str(tmp_path / "videos/charades/V"))
    assert records[20]["video"] == "m0.mp4"  # no video_root: as written
    assert load_config(config) == records  # fixed seed: the same draw every time
    other = load_config(write(tmp_path / "other.yaml", config.read_text().replace("seed: 3", "seed: 4")))
    assert [r["id"] for r in other] != [r["id"] for r in records]


@pytest.mark.parametrize("body, message", [
    ("datasets: {}", "datasets: expected a non-empty list"),
    ("datasets: []", "datasets: expected a non-empty list"),  # `data check` would report "all records OK"
    ("dataset:\n  - path: x.jsonl", "unknown key 'dataset' \\(known: datasets, seed\\)"),
    ('{"id": "a#0", "task": "tvg"}\n{"id": "a#1", "task": "tvg"}', "not a YAML data config; a config lists"),
    ("datasets:\n  - path: x.jsonl\n    fromat: records", "unknown keys \\['fromat'\\]"),
    ("datasets:\n  - path: x.jsonl\n    format: charades", "format: 'charades' is not one of"),
    ("datasets:\n  - path: x.jsonl\n    sample: 1.5", "sample: a count"),
    ("datasets:\n  - path: missing.jsonl", "missing.jsonl: annotation file not found"),
    ("datasets:\n  - path: null", "datasets\\[0\\]: path: expected a non-empty string, got None"),
    ("datasets:\n  - path: x.jsonl\n    video_root: 3", "video_root: expected a non-empty string, got 3"),
    ("seed: [1]\ndatasets:\n  - path: x.jsonl", "seed: expected an integer, got \\[1\\]"),
])  # fmt: skip
def test_bad_data_configs_name_the_file_and_the_entry(tmp_path, body, message):
    config = write(tmp_path / "bad.yaml", body)
    with pytest.raises(DataError, match=message) as error:
        load_config(config)
    assert str(tmp_path) in str(error.value)


# ---------------------------------------------------------------- bad data
GOOD = {"id": "a#0", "task": "tvg", "video": "a.mp4", "question": "q", "span": [1, 2], "duration": 10}


@pytest.mark.parametrize("line, message", [
    ('{"id": "a#1", "task": "tvg", "video": "a.mp4", "question": "q", "span": [3, 50], "duration": 10}', "past the end"),
    ('{"id": "a#1", "task": "tvg", "video": "a.mp4", "question": "q", "span": [NaN, 5], "duration": 10}', "not a finite number"),
    ('{"id": "a#1", "task": "tvg", "video": "a.mp4", "question": "q", "span": [5, 4]}', "start < end"),
    ('{"id": "a#1", "task": "tvg", "video": "a.mp4", "question": "q", "span": [1, 2]', "malformed JSON line"),
    ('{"id": "a#1", "task": "mcq", "video": "a.mp4", "question": "q", "options": ["x", "y"], "answer": "C"}', "answer: 'C' is not an option letter"),
    ('{"id": "a#1", "task": "mcq", "video": "a.mp4", "question": "q", "options": null, "answer": "A"}', "options: a mcq record needs"),
    ('{"id": "a#1", "task": "oeqa", "video": "a.mp4", "question": "q"}', "oeqa record needs the answer"),
    ('{"id": "a#1", "task": "ground", "video": "a.mp4", "question": "q"}', "task: 'ground' is not one of"),
    ('{"id": "a#1", "task": "tvg", "video": "a.mp4", "question": "q", "span": [1, 2], "spna": 1}', "unknown fields"),
])  # fmt: skip
def test_bad_records_name_the_file_and_line_or_are_counted_skips_in_training(tmp_path, caplog, line, message):
    src = write(tmp_path / "recs.jsonl", f"{json.dumps(GOOD)}\n{line}\n{json.dumps({**GOOD, 'id': 'a#2'})}\n")
    with pytest.raises(DataError, match=f"recs.jsonl:2: .*{message}"):
        read_records(src)
    skips = Skips(limit=1)  # training mode
    with caplog.at_level(logging.WARNING):
        assert [r["id"] for r in read_records(src, skips=skips)] == ["a#0", "a#2"]
    assert len(skips.problems) == 1 and "recs.jsonl:2" in caplog.text


def test_the_skip_cap_stops_a_mostly_broken_dataset(tmp_path):
    src = write(tmp_path / "recs.jsonl", "not json\n" * 3 + json.dumps(GOOD) + "\n")
    assert len(read_records(src, skips=Skips(limit=3))) == 1
    with pytest.raises(DataError, match="more than 2 bad records skipped; the last: .*recs.jsonl:3"):
        read_records(src, skips=Skips(limit=2))


def test_malformed_json_files_name_the_line(tmp_path):
    src = write(tmp_path / "mv.json", '[\n {"video": "a.mp4",\n  "question": oops}\n]')
    with pytest.raises(DataError, match="mv.json:3: malformed JSON"):
        read_records(src, "mvbench")


def test_charades_bad_line_and_activitynet_mismatch_name_their_place(tmp_path):
    with pytest.raises(DataError, match="c.txt:2: .*expected 'VIDEO START END##sentence'"):
        read_records(write(tmp_path / "c.txt", "A 1 2##ok\nA 1 2 opens the door\n"), "charades_sta")
    src = write(
        tmp_path / "anet.json", json.dumps({"v1": {"duration": 9, "timestamps": [[1, 2]], "sentences": ["a", "b"]}})
    )
    with pytest.raises(DataError, match="anet.json: entry 'v1': .*1 timestamps but 2 sentences"):
        read_records(src, "activitynet")


def test_malformed_caption_entries_are_one_problem_each_and_the_rest_load(tmp_path):
    good = {"duration": 9, "timestamps": [[1, 2]], "sentences": ["a"]}
    src = write(tmp_path / "anet.json", json.dumps({"v1": {**good, "timestamps": None}, "v2": [1], "v3": good}))
    skips = Skips(limit=2)  # training mode
    assert [r["id"] for r in read_records(src, "activitynet", skips=skips)] == ["activitynet/v3#0"]
    assert ["entry 'v1'" in str(skips.problems[0]), "entry 'v2'" in str(skips.problems[1])] == [True, True]


def test_a_file_in_another_layout_or_unreadable_names_the_file(tmp_path):
    src = write(tmp_path / "r1.json", json.dumps([{"video": "a.mp4", "problem": "q"}]))  # Temporal-R1's list
    with pytest.raises(DataError, match="r1.json: expected a JSON object at the top, got list"):
        read_records(src, "activitynet")
    with pytest.raises(DataError, match="anet.json: expected a JSON list at the top, got dict"):
        read_records(write(tmp_path / "anet.json", "{}"), "mvbench")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n\xe9t\xe9\n")
    with pytest.raises(DataError, match="latin1.jsonl: cannot read the annotation file \\(UnicodeDecodeError"):
        read_records(tmp_path / "latin1.jsonl", skips=Skips(limit=5))  # the file, not one record: no skip
    with pytest.raises(DataError, match="cannot read the annotation file \\(IsADirectoryError"):
        read_records(tmp_path)


def test_validate_fills_every_key_and_keeps_true_spans_as_annotated():
    rec = validate_record({**GOOD, "span": ["1.5", 10.4]})
    assert rec["span"] == [1.5, 10.4] and rec["options"] is None and rec["clip"] is None  # not clamped
    # NExT-GQA's test split starts 36 segments at -0.1 or -0.2 s: data, kept; far outside is an error.
    assert validate_record({**GOOD, "span": [-0.2, 3]})["span"] == [-0.2, 3.0]
    with pytest.raises(DataError, match="where: span: \\[-5.0, 3.0\\] starts before the video"):
        validate_record({**GOOD, "span": [-5, 3]}, "where")
    with pytest.raises(DataError, match="where: clip: starts before the video"):
        validate_record({**GOOD, "clip": [-0.2, 3]}, "where")
    with pytest.raises(DataError, match="span: .* is outside the clip"):
        validate_record({**GOOD, "clip": [3, 8]})


# ---------------------------------------------------------------- the CLI
def test_convert_writes_records_that_read_back(tmp_path, capsys):
    src = write(tmp_path / "c.txt", "A 1 2##one\nB 3 4##two\n")
    out = tmp_path / "out/records.jsonl"
    assert data_main(["convert", str(src), "--format", "charades_sta", "-o", str(out)]) == 0
    assert read_records(out) == read_records(src, "charades_sta")
    assert data_main(["convert", str(src), "-o", str(out)]) == 2
    assert "give --format" in capsys.readouterr().err
    # an output that is a directory: a message, not a traceback, and no temporary file left behind
    assert data_main(["convert", str(src), "--format", "charades_sta", "-o", str(tmp_path / "out")]) == 2
    assert "Is a directory" in capsys.readouterr().err and not list(tmp_path.glob(".*.tmp"))
    assert (
        data_main(["rows", str(out), "--processor", str(tmp_path / "no_model"), "-o", str(tmp_path / "rows.jsonl")])
        == 2
    )
    assert "no_model: cannot load a processor" in capsys.readouterr().err


def test_check_reports_a_table_and_the_problems_with_file_and_line(tmp_path, synthetic_data, capsys):
    recs = [json.loads(line) for line in (synthetic_data / "records.jsonl").read_text().splitlines()[:4]]
    write(tmp_path / "corrupt.mp4", "not a video")
    bad = [
        {**recs[0], "id": "missing", "video": "nowhere.mp4"},
        {**recs[0], "id": "corrupt", "video": str(tmp_path / "corrupt.mp4")},
        {**recs[0], "id": "long", "duration": None, "span": [1.0, 40.0]},  # past the end of the real file
        {**recs[0], "id": "wrongdur", "duration": 60.0},
        recs[1],
    ]
    write(tmp_path / "recs.jsonl", "".join(json.dumps(r) + "\n" for r in recs + bad) + '{"broken\n')
    config = write(tmp_path / "data.yaml", f"datasets:\n  - path: recs.jsonl\n    video_root: {synthetic_data}\n")
    assert data_main(["check", str(config)]) == 1
    out = capsys.readouterr().out
    assert "recs.jsonl" in out and "selected" in out and "problems" in out
    assert "6 problem(s)" in out
    assert "recs.jsonl:5: " in out and "nowhere.mp4: video file not found" in out
    assert "recs.jsonl:6: " in out and "video does not decode" in out
    assert "recs.jsonl:7: span: [1.0, 40.0] is past the end" in out
    assert "recs.jsonl:8: duration: the annotation says 60.0 s" in out
    assert "recs.jsonl:9: id: 'synthetic/clip_000#mcq' was already used at " in out
    assert "recs.jsonl:10: malformed JSON line" in out

    good = write(
        tmp_path / "good.yaml",
        f"datasets:\n  - path: {synthetic_data / 'records.jsonl'}\n    video_root: {synthetic_data}\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "openrlhf_video", "data", "check", str(good)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "all records OK" in result.stdout and "checking records.jsonl" in result.stderr  # the progress bar


def test_check_finds_ids_repeated_by_a_file_listed_twice_and_a_fraction_never_selects_nothing(
    tmp_path, synthetic_data, capsys
):
    entry = f"  - path: {synthetic_data / 'records.jsonl'}\n    video_root: {synthetic_data}\n"
    twice = write(tmp_path / "twice.yaml", "datasets:\n" + entry + entry)
    assert data_main(["check", str(twice), "--no-decode"]) == 1
    assert "32 problem(s)" in capsys.readouterr().out  # each record of the second listing
    small = write(tmp_path / "small.yaml", "datasets:\n" + entry + "    sample: 0.01\n")
    assert len(load_config(small)) == 1  # 0.32 of a record rounds up, as in Temporal-R1's loader
