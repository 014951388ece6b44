"""Shared benchmark plumbing: machine facts and writing results as JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write(name: str, data: dict[str, Any], table: list[list[Any]], notes: str = "") -> Path:
    """Write results/NAME.json and results/NAME.md (first table row is the header)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# {name}", "", f"Machine: {data['machine']}", ""]
    lines.append("| " + " | ".join(map(str, table[0])) + " |")
    lines.append("|" + "---|" * len(table[0]))
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table[1:]]
    if notes:
        lines += ["", notes]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path
