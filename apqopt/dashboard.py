"""apqopt dashboard: review recorded searches (`apqopt dashboard --storage URL`, or
`streamlit run dashboard/app.py -- --storage URL [--lut TABLE]`).

Pages: Studies, Compare searchers, Candidate inspector, Predictor, LUT explorer. Everything a page shows
comes from the storage being viewed (through ``apqopt.review.StudyReader``: SQLite read-only, plain SQL
queries) -- never from the working directory -- and is re-read after ``TTL_S`` seconds, so running
studies update. The LUT explorer reads the shipped tables or the one given with ``--lut``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from apqopt.hardware.lut import LUT, LUTError, load_shipped
from apqopt.review import StudyReader
from apqopt.search.verdict import all_verdicts
from apqopt.settings import default_storage
from apqopt.shipped import tables_dir
from apqopt.space import BIT_FIELDS, get_space
from apqopt.studies import StorageError

PAGES = ["Studies", "Compare searchers", "Candidate inspector", "Predictor", "LUT explorer"]
TTL_S = float(os.environ.get("APQOPT_DASHBOARD_TTL", "10"))  # seconds before a page re-reads the storage
PALETTE = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24
OTHERS = "(studies not from a compare run)"


def _arg(flag: str) -> str | None:
    args = sys.argv[1:]
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def storage_url() -> str:
    return _arg("--storage") or os.environ.get("APQOPT_STORAGE") or default_storage()


@st.cache_resource(show_spinner=False)
def reader(url: str) -> StudyReader:
    return StudyReader(url)


@st.cache_data(show_spinner=False, ttl=TTL_S)
def studies(url: str) -> pd.DataFrame:
    return reader(url).studies()


@st.cache_data(show_spinner=False, ttl=TTL_S)
def attrs(url: str) -> dict[str, dict[str, Any]]:
    return reader(url).study_attrs()


@st.cache_data(show_spinner=False, ttl=TTL_S)
def trials(url: str, study: str) -> pd.DataFrame:
    return reader(url).trials(study)


@st.cache_data(show_spinner=False, ttl=TTL_S)
def front(url: str, study: str) -> pd.DataFrame:
    return reader(url).front(study)


def colours(names: list[str]) -> dict[str, str]:
    """One colour per searcher, the same in every chart (sorted names, so it does not depend on the pick)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(set(names)))}


# ---------------------------------------------------------------------- Studies
def page_studies(url: str, table: pd.DataFrame) -> None:
    st.header("Studies")
    chosen = st.multiselect("searchers", sorted(table["searcher"].unique()), key="filter_searchers")
    view = table[table["searcher"].isin(chosen)] if chosen else table
    cols = st.columns(3)
    cols[0].metric("studies", len(view))
    cols[1].metric("trials stored", f"{int(view['trials'].sum()):,}")
    best = view["best_accuracy"].max()
    cols[2].metric("best predicted accuracy", "—" if pd.isna(best) else f"{best:.4f}")
    st.dataframe(view, hide_index=True, width="stretch")
    partial = view[view["evaluated"].notna() & (view["trials"] < view["evaluated"])]
    if len(partial):
        st.caption(
            f"{len(partial)} stud{'y stores' if len(partial) == 1 else 'ies store'} fewer trials than evaluated "
            "(e.g. "
            + ", ".join(
                f"{r.study}: stored {r.trials:,} of {int(r.evaluated):,} evaluated"
                for r in partial.head(2).itertuples()
            )
            + "): runs beyond 5,000 evaluations keep the "
            "feasible front as trials and the whole history inside the study."
        )
    grouped = (
        view.groupby("searcher")
        .agg(
            studies=("study", "count"),
            trials=("trials", "sum"),
            best_accuracy=("best_accuracy", "max"),
            hypervolume_mean=("hypervolume", "mean"),
        )
        .reset_index()
    )
    st.subheader("By searcher")
    st.dataframe(grouped, hide_index=True, width="stretch")


# ---------------------------------------------------------------------- Compare searchers
def compare_runs(table: pd.DataFrame, meta: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Studies grouped by the compare run that recorded them (its tag); the rest under OTHERS."""
    runs: dict[str, list[str]] = {}
    for name in table["study"]:
        runs.setdefault(meta.get(name, {}).get("compare") or OTHERS, []).append(name)
    return dict(sorted(runs.items(), key=lambda kv: (kv[0] == OTHERS, kv[0])))


def page_compare(url: str, table: pd.DataFrame) -> None:
    st.header("Compare searchers")
    meta = attrs(url)
    runs = compare_runs(table, meta)
    run = st.selectbox("compare run", list(runs), key="cmp_run")
    names = st.multiselect("studies", runs[run], default=runs[run], key=f"cmp_studies_{run}")
    if not names:
        st.info("Pick studies to compare.")
        return
    searcher_of = {n: meta.get(n, {}).get("searcher", "?") for n in names}
    colour = colours(list(table["searcher"]))
    limit = next((meta[n]["constraints"].get("latency") for n in names if meta.get(n, {}).get("constraints")), None)

    fig = go.Figure()
    grey: list[pd.DataFrame] = []
    rows = []
    shown: set[str] = set()
    for name in names:
        df = trials(url, name)
        done = df[df["state"] == "COMPLETE"]
        f = front(url, name)
        grey.append(done[~done["number"].isin(f["number"])])
        s = searcher_of[name]
        if len(f):
            fig.add_trace(
                go.Scatter(
                    x=f["latency"],
                    y=f["accuracy"],
                    mode="lines+markers",
                    line_shape="hv",
                    line={"color": colour[s], "width": 1.5},
                    marker={"size": 5},
                    opacity=0.75,
                    name=s,
                    legendgroup=s,
                    showlegend=s not in shown,
                    hovertext=f"{name}: predicted front",
                )
            )
            shown.add(s)
        m = done.dropna(subset=["measured"])
        if len(m):
            fig.add_trace(
                go.Scatter(
                    x=m["latency"],
                    y=m["measured"],
                    error_y={"type": "data", "array": m["stderr"].fillna(0)},
                    mode="markers",
                    marker={"symbol": "x", "size": 9, "color": colour[s]},
                    name=f"{s} measured ± SE",
                    legendgroup=s,
                    showlegend=f"{s} m" not in shown,
                )
            )
            shown.add(f"{s} m")
        rows.append(
            {
                "study": name,
                "searcher": s,
                "seed": meta.get(name, {}).get("seed"),
                "front_size": len(f),
                "best_accuracy": float(f["accuracy"].max()) if len(f) else None,
                "hypervolume": meta.get(name, {}).get("hypervolume"),
                "measured_hypervolume": meta.get(name, {}).get("measured_hypervolume"),
            }
        )
    rest = pd.concat(grey) if grey else pd.DataFrame()
    for feasible, label, style in ((True, "dominated", "circle"), (False, "infeasible", "x-thin")):
        part = rest[rest["feasible"] == feasible] if len(rest) else rest
        if len(part):
            fig.add_trace(
                go.Scattergl(
                    x=part["latency"],
                    y=part["accuracy"],
                    mode="markers",
                    marker={"color": "lightgrey" if feasible else "#f4a6a6", "size": 4, "symbol": style},
                    name=f"{label} trials ({len(part):,})",
                )
            )
    fig.data = fig.data[-2:] + fig.data[:-2] if len(rest) else fig.data  # grey points under the fronts
    if limit is not None:
        fig.add_vline(x=limit, line_dash="dash", line_color="red", annotation_text=f"latency limit {limit:g} ms")
    fig.update_layout(xaxis_title="latency (ms)", yaxis_title="accuracy (predicted; x measured)", height=460)
    st.plotly_chart(fig, width="stretch")
    st.subheader("Metrics")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

    curves = [
        {"searcher": searcher_of[n], "seed": meta[n].get("seed"), "evaluations": int(c), "hypervolume": float(hv)}
        for n in names
        for c, hv in meta.get(n, {}).get("hv_curve", [])
    ]
    if curves:
        st.subheader("Hypervolume vs evaluations (mean ± sd over seeds, recorded by apqopt compare)")
        df = pd.DataFrame(curves).groupby(["searcher", "evaluations"])["hypervolume"].agg(["mean", "std"])
        df = df.fillna(0).reset_index()
        hv = go.Figure()
        for s, part in df.groupby("searcher"):
            c = colour[str(s)]
            band_x = [*part["evaluations"], *part["evaluations"][::-1]]
            band_y = [*(part["mean"] + part["std"]), *(part["mean"] - part["std"])[::-1]]
            hv.add_trace(
                go.Scatter(
                    x=band_x,
                    y=band_y,
                    fill="toself",
                    fillcolor=c,
                    opacity=0.2,
                    line={"width": 0},
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
            hv.add_trace(go.Scatter(x=part["evaluations"], y=part["mean"], line={"color": c}, name=str(s)))
        hv.update_layout(xaxis_title="evaluated distinct networks", yaxis_title="hypervolume", height=360)
        st.plotly_chart(hv, width="stretch")
    by: dict[str, dict[int, float]] = {}
    measured = all(meta.get(n, {}).get("measured_hypervolume") is not None for n in names)
    key = "measured_hypervolume" if measured else "hypervolume"
    for n in names:
        if meta.get(n, {}).get(key) is not None and meta[n].get("seed") is not None:
            by.setdefault(searcher_of[n], {})[int(meta[n]["seed"])] = float(meta[n][key])
    if len(by) > 1:
        st.subheader(f"Verdicts ({'measured' if measured else 'predicted'} hypervolume, paired over seeds)")
        ranked = dict(sorted(by.items(), key=lambda kv: -np.mean(list(kv[1].values()))))
        st.markdown("\n".join(f"- {v.line()}" for v in all_verdicts(ranked, "measured HV" if measured else "HV")))


# ---------------------------------------------------------------------- Candidate inspector
def page_inspector(url: str, table: pd.DataFrame) -> None:
    st.header("Candidate inspector")
    name = st.selectbox("study", table["study"].tolist(), key="insp_study")
    df = trials(url, name)
    done = df[df["state"] == "COMPLETE"]
    if not len(done):
        st.warning(f"Study '{name}' has no completed trials.")
        return
    f = front(url, name).sort_values("accuracy", ascending=False)
    pool = f if len(f) else done.sort_values("accuracy", ascending=False).head(50)
    labels = [f"trial {r.number}: {r.accuracy:.4f} at {r.latency:.3f} ms" for r in pool.itertuples()]
    pick = st.selectbox(
        "candidate (the feasible front, most accurate first)" if len(f) else "candidate (no feasible one)",
        labels,
        key=f"insp_pick_{name}",
    )
    number = int(pool["number"].iloc[labels.index(pick)])
    with st.expander("another trial by number"):
        other = st.number_input("trial number", min_value=0, value=number, key=f"insp_trial_{name}")
        if int(other) != number and int(other) in set(done["number"]):
            number = int(other)
    r = done[done["number"] == number].iloc[0]
    cand = reader(url).candidate(name, number)
    space = get_space(cand.space)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("predicted accuracy", f"{r['accuracy']:.4f}")
    c2.metric("measured accuracy", "—" if np.isnan(r["measured"]) else f"{r['measured']:.4f}")
    c3.metric("latency (ms)", f"{r['latency']:.3f}")
    c4.metric("energy (mJ)", f"{r['energy']:.3f}")
    c5.metric("feasible", "yes" if r["feasible"] else "no")
    blocks = pd.DataFrame(
        [
            {
                "block": f"b{b}",
                "stage": int(space.block_stage[b]),
                "kernel": blk.kernel,
                "middle": blk.middle,
                **{fld: getattr(blk, fld) for fld in BIT_FIELDS},
            }
            for b, blk in space.active_blocks(cand)
        ]
    )
    st.subheader(f"Architecture and policy (depths {list(cand.depths)}; blocks numbered as in the params)")
    st.markdown(network_picture(blocks))
    st.plotly_chart(
        px.bar(
            blocks.melt(id_vars=["block", "stage"], value_vars=list(BIT_FIELDS)),
            x="block",
            y="value",
            color="variable",
            barmode="group",
            labels={"value": "bits"},
        ),
        width="stretch",
    )
    st.dataframe(blocks, hide_index=True, width="stretch")
    try:
        cost = load_shipped(cand.space).price_candidate(cand)
        layers = pd.DataFrame(
            [
                {
                    "layer": ly.name,
                    "shape": str(ly.shape),
                    "bits": f"W{ly.w_bits}A{ly.a_bits}",
                    "latency_ms": lat,
                    "energy_mJ": en,
                }
                for ly, lat, en in cost.layers
            ]
        )
        st.subheader("Per-layer cost (shipped table)")
        per = layers.melt(id_vars=["layer"], value_vars=["latency_ms", "energy_mJ"])
        st.plotly_chart(
            px.bar(per, x="layer", y="value", facet_row="variable", height=420).update_yaxes(matches=None),
            width="stretch",
        )
        st.dataframe(layers, hide_index=True, width="stretch")
    except LUTError as exc:
        st.info(f"No per-layer breakdown: {exc}")
    st.subheader("Rebuild it")
    st.code(f"from apqopt import Candidate\ncandidate = Candidate.from_json({cand.to_json()!r})", language="python")


def network_picture(blocks: pd.DataFrame) -> str:
    """The network at a glance: one line per stage, one cell per block (kernel, width, bits W/A)."""
    lines = ["| stage | blocks: kernel · middle width · pointwise W/A · depthwise W/A |", "|---|---|"]
    for s, part in blocks.groupby("stage"):
        cells = [
            f"`{r.block} k{r.kernel} ·{r.middle} · {r.pw_w}/{r.pw_a} · {r.dw_w}/{r.dw_a}`" for r in part.itertuples()
        ]
        lines.append(f"| {s} | {' '.join(cells)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- Predictor
def page_predictor(url: str, table: pd.DataFrame) -> None:
    st.header("Predictor")
    pts = []
    for name in table["study"]:
        df = trials(url, name).dropna(subset=["measured"])
        pts += [
            {"study": name, "predicted": p, "measured": m, "stderr": e}
            for p, m, e in zip(df["accuracy"], df["measured"], df["stderr"].fillna(0))
        ]
    if not pts:
        st.info("No verified candidates yet: run `apqopt verify --study NAME` to measure a study's front.")
        return
    from apqopt.predictor.metrics import ranking_report

    df = pd.DataFrame(pts)
    c = st.columns(4)
    c[0].metric("verified candidates (n)", len(df))
    c[1].metric("MAE (points)", f"{100 * np.mean(np.abs(df['predicted'] - df['measured'])):.2f}")
    if len(df) >= 5:
        rep = ranking_report(df["measured"].to_numpy(), df["predicted"].to_numpy())
        c[2].metric("pairwise accuracy", f"{rep['pairwise_accuracy']:.3f}")
        c[3].metric("Kendall τ", f"{rep['kendall_tau']:.3f}")
    else:
        c[2].metric("pairwise accuracy", "—", help="needs at least 5 verified candidates")
    fig = px.scatter(df, x="predicted", y="measured", color="study", error_y="stderr")
    lo, hi = (
        float(min(df["predicted"].min(), df["measured"].min())),
        float(max(df["predicted"].max(), df["measured"].max())),
    )
    fig.add_trace(
        go.Scatter(
            x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "grey"}, name="predicted = measured"
        )
    )
    st.plotly_chart(fig, width="stretch")


# ---------------------------------------------------------------------- LUT explorer
def page_lut() -> None:
    st.header("LUT explorer")
    shipped = sorted(p.name for p in tables_dir().glob("*.csv"))
    given = _arg("--lut")
    options = ([given] if given else []) + shipped
    choice = st.selectbox("table", options, key="lut_table")
    try:
        lut = LUT.load(choice if choice == given else tables_dir() / choice)
    except (LUTError, OSError) as exc:
        st.error(str(exc))
        return
    shapes = lut.shapes()
    if not shapes:
        st.info("The table has no layer entries.")
        return
    labels = [str(s) for s in shapes]
    shape = st.selectbox("layer shape (C_in, C_out, H_in, k, s, pad, groups)", labels, key="lut_shape")
    key = shapes[labels.index(shape)]
    pairs = [(w, a) for w, a in lut.bit_pairs() if (*key, w, a) in lut.entries]
    metric = st.radio("metric", ["latency", "energy"], horizontal=True, key="lut_metric")
    m = 0 if metric == "latency" else 1
    unit = "ms" if m == 0 else "mJ"
    df = pd.DataFrame([{"bits": f"W{w}A{a}", unit: lut.entries[(*key, w, a)][m]} for w, a in pairs])
    ref = df[unit].max()
    df["relative to the largest"] = df[unit] / ref if ref else 0.0
    if df[unit].nunique() == 1:
        st.info(
            f"Every bit pair costs the same here ({df[unit].iloc[0]:.6g} {unit}): this table's {metric} "
            "does not depend on the bits for this layer."
        )
    fig = px.bar(df, x="bits", y=unit, text=df[unit].map(lambda v: f"{v:.4g}"))
    st.plotly_chart(fig, width="stretch")
    st.dataframe(df, hide_index=True, width="stretch")
    st.caption(f"{lut.hardware}: {lut.command}")


def main() -> None:
    st.set_page_config(page_title="apqopt", layout="wide")
    st.title("apqopt")
    url = storage_url()
    st.sidebar.caption(f"storage: {url}")
    page = st.sidebar.radio("page", PAGES, key="page")
    if st.sidebar.button("refresh now", help=f"pages re-read the storage every {TTL_S:g} s anyway"):
        st.cache_data.clear()
    if page == "LUT explorer":
        page_lut()
        return
    try:
        table = studies(url)
    except StorageError as exc:
        st.warning(f"No storage to show: {exc}. Run `apqopt search` or `apqopt compare` first.")
        return
    for notice in reader(url).notices:
        st.sidebar.info(notice)
    if len(table) and (table["state"] == "incomplete").any():
        n = int((table["state"] == "incomplete").sum())
        st.sidebar.warning(
            f"{n} stud{'y was' if n == 1 else 'ies were'} interrupted while being recorded (state: incomplete); "
            "rerunning the same command completes them"
        )
    if not len(table):
        st.info("The storage holds no studies yet. Run `apqopt search` or `apqopt compare` to create some.")
        return
    {
        "Studies": page_studies,
        "Compare searchers": page_compare,
        "Candidate inspector": page_inspector,
        "Predictor": page_predictor,
    }[page](url, table)


if __name__ == "__main__":  # `streamlit run apqopt/dashboard.py` runs the module as a script
    main()
