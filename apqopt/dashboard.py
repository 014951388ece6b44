"""apqopt dashboard: review recorded searches (`apqopt dashboard --storage URL`, or
`streamlit run dashboard/app.py -- --storage URL`).

Pages: Studies, Compare searchers, Candidate inspector, Predictor, LUT explorer. Read-only: the
storage is opened through ``apqopt.review.StudyReader`` (SQLite read-only, plain SQL queries).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from apqopt.hardware.lut import LUTError, load_shipped
from apqopt.review import StudyReader
from apqopt.settings import benchmark_results_dir, default_storage
from apqopt.space import BIT_FIELDS, get_space
from apqopt.studies import StorageError

PAGES = ["Studies", "Compare searchers", "Candidate inspector", "Predictor", "LUT explorer"]


def storage_url() -> str:
    args = sys.argv[1:]
    if "--storage" in args:
        return args[args.index("--storage") + 1]
    return os.environ.get("APQOPT_STORAGE") or default_storage()


@st.cache_resource(show_spinner=False)
def reader(url: str) -> StudyReader:
    return StudyReader(url)


@st.cache_data(show_spinner=False)
def studies(url: str) -> pd.DataFrame:
    return reader(url).studies()


@st.cache_data(show_spinner=False)
def trials(url: str, study: str) -> pd.DataFrame:
    return reader(url).trials(study)


@st.cache_data(show_spinner=False)
def front(url: str, study: str) -> pd.DataFrame:
    return reader(url).front(study)


def page_studies(url: str, table: pd.DataFrame) -> None:
    st.header("Studies")
    chosen = st.multiselect("searchers", sorted(table["searcher"].unique()), key="filter_searchers")
    view = table[table["searcher"].isin(chosen)] if chosen else table
    cols = st.columns(3)
    cols[0].metric("studies", len(view))
    cols[1].metric("trials", f"{int(view['trials'].sum()):,}")
    best = view["best_accuracy"].max()
    cols[2].metric("best predicted accuracy", "—" if pd.isna(best) else f"{best:.4f}")
    st.dataframe(view, hide_index=True, width="stretch")
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


def page_compare(url: str, table: pd.DataFrame) -> None:
    st.header("Compare searchers")
    names = st.multiselect("studies", table["study"].tolist(), default=table["study"].tolist()[:6], key="cmp_studies")
    if not names:
        st.info("Pick studies to compare.")
        return
    fig = go.Figure()
    rows = []
    for name in names:
        f = front(url, name)
        searcher = table.loc[table["study"] == name, "searcher"].iloc[0]
        if len(f):
            fig.add_trace(
                go.Scatter(
                    x=f["latency"], y=f["accuracy"], mode="lines+markers", line_shape="hv", name=f"{name} (predicted)"
                )
            )
            m = f.dropna(subset=["measured"])
            if len(m):
                fig.add_trace(
                    go.Scatter(
                        x=m["latency"], y=m["measured"], mode="markers", marker_symbol="x", name=f"{name} (measured)"
                    )
                )
        rows.append(
            {
                "study": name,
                "searcher": searcher,
                "front_size": len(f),
                "best_accuracy": float(f["accuracy"].max()) if len(f) else None,
                "hypervolume": table.loc[table["study"] == name, "hypervolume"].iloc[0],
            }
        )
    fig.update_layout(xaxis_title="latency (ms)", yaxis_title="accuracy", height=420)
    st.plotly_chart(fig, width="stretch")
    st.subheader("Metrics")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    attrs = reader(url).study_attrs()  # the curves compare recorded into these studies, nothing else
    curves = [
        {"searcher": attrs[n].get("searcher", "?"), "seed": attrs[n].get("seed"), "evaluations": c, "hypervolume": hv}
        for n in names
        for c, hv in attrs.get(n, {}).get("hv_curve", [])
    ]
    if curves:
        st.subheader("Hypervolume vs evaluations (recorded by apqopt compare)")
        df = pd.DataFrame(curves).groupby(["searcher", "evaluations"])["hypervolume"].agg(["mean", "std"]).reset_index()
        st.plotly_chart(px.line(df, x="evaluations", y="mean", color="searcher", error_y="std"), width="stretch")


def page_inspector(url: str, table: pd.DataFrame) -> None:
    st.header("Candidate inspector")
    name = st.selectbox("study", table["study"].tolist(), key="insp_study")
    df = trials(url, name)
    done = df[df["state"] == "COMPLETE"]
    if not len(done):
        st.warning(f"Study '{name}' has no completed trials.")
        return
    number = int(
        st.number_input(
            "trial number",
            min_value=int(done["number"].min()),
            max_value=int(done["number"].max()),
            value=int(done["number"].iloc[0]),
            key="insp_trial",
        )
    )
    row = done[done["number"] == number]
    if not len(row):
        st.warning(f"Trial {number} did not complete.")
        return
    cand = reader(url).candidate(name, number)
    r = row.iloc[0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("predicted accuracy", f"{r['accuracy']:.4f}")
    c2.metric("measured accuracy", "—" if np.isnan(r["measured"]) else f"{r['measured']:.4f}")
    c3.metric("latency (ms)", f"{r['latency']:.3f}")
    c4.metric("energy (mJ)", f"{r['energy']:.3f}")
    blocks = pd.DataFrame(
        [
            {"block": i, "stage": s, "kernel": b.kernel, "middle": b.middle, **{f: getattr(b, f) for f in BIT_FIELDS}}
            for i, (s, b) in enumerate((s, b) for s, st_ in enumerate(cand.stages) for b in st_)
        ]
    )
    st.subheader(f"Architecture and policy (depths {list(cand.depths)})")
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
        st.dataframe(layers, hide_index=True, width="stretch")
    except LUTError as exc:
        st.info(f"No per-layer breakdown: {exc}")
    st.subheader("Rebuild it")
    st.code(f"from apqopt import Candidate\ncandidate = Candidate.from_json({cand.to_json()!r})", language="python")


def page_predictor(url: str, table: pd.DataFrame) -> None:
    st.header("Predictor")
    pts = []
    for name in table["study"]:
        df = trials(url, name).dropna(subset=["measured"])
        pts += [{"study": name, "predicted": p, "measured": m} for p, m in zip(df["accuracy"], df["measured"])]
    if len(pts) >= 2:
        from apqopt.predictor.metrics import ranking_report

        df = pd.DataFrame(pts)
        rep = ranking_report(df["measured"].to_numpy(), df["predicted"].to_numpy())
        c1, c2, c3 = st.columns(3)
        c1.metric("pairwise accuracy", f"{rep['pairwise_accuracy']:.3f}")
        c2.metric("Kendall τ", f"{rep['kendall_tau']:.3f}")
        c3.metric("MAE", f"{rep['mae']:.4f}")
        st.plotly_chart(px.scatter(df, x="predicted", y="measured", color="study"), width="stretch")
    else:
        st.info("No verified candidates yet: run `apqopt verify --study NAME` to measure a study's front.")
    curve = benchmark_results_dir() / "predictor_transfer.json"
    if curve.exists():
        data = json.loads(curve.read_text())
        rows = [
            {"method": m, "pairs": int(n), "pairwise": float(np.mean(v))}
            for m, c in data["curves"].items()
            for n, v in c.items()
        ]
        st.subheader("Transfer vs scratch (APQ Fig. 7)")
        st.plotly_chart(
            px.line(pd.DataFrame(rows), x="pairs", y="pairwise", color="method", markers=True, log_x=True),
            width="stretch",
        )


def page_lut(table: pd.DataFrame) -> None:
    st.header("LUT explorer")
    space_name = st.selectbox("space", ["fmnist", "apq-mbv2"], key="lut_space")
    try:
        lut = load_shipped(space_name)
    except LUTError as exc:
        st.error(str(exc))
        return
    shapes = lut.shapes()
    shape = st.selectbox(
        "layer shape (C_in, C_out, H_in, k, s, pad, groups)", [str(s) for s in shapes], key="lut_shape"
    )
    key = shapes[[str(s) for s in shapes].index(shape)]
    bits = get_space(space_name).bits
    metric = st.radio("metric", ["latency", "energy"], horizontal=True, key="lut_metric")
    m = 0 if metric == "latency" else 1
    grid = [[lut.entries[(*key, w, a)][m] for a in bits] for w in bits]
    st.plotly_chart(
        px.imshow(
            grid,
            x=[f"A{a}" for a in bits],
            y=[f"W{w}" for w in bits],
            text_auto=".4f",
            labels={"color": "ms" if m == 0 else "mJ"},
        ),
        width="stretch",
    )
    st.caption(f"{lut.hardware}: {lut.command}")


def main() -> None:
    st.set_page_config(page_title="apqopt", layout="wide")
    st.title("apqopt")
    url = storage_url()
    st.sidebar.caption(f"storage: {url}")
    page = st.sidebar.radio("page", PAGES, key="page")
    if page == "LUT explorer":
        page_lut(pd.DataFrame())
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
