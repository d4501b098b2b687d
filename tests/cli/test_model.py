"""The model commands (describe, verify, calibrate, export) through the command line."""

from __future__ import annotations

import json


def test_describe_command_shows_how_sure_each_group_is(tiny_index, cli):
    query = tiny_index["query"]
    code, out, err = cli("describe", "--checkpoint", tiny_index["ckpt"], query, "--device", "cpu")
    assert code == 0, err
    first, second = out.strip().splitlines()
    assert first.startswith(f"{query}: ")
    assert second.startswith("  how sure, per group: head ")
    code, out, _ = cli("describe", "--checkpoint", tiny_index["ckpt"], query, "--json")
    said = json.loads(out)[0]
    weak = [g for g, p in said["certainty"].items() if p < 0.5]
    assert said["weak"] == weak and second.count("(weak)") == len(weak)
