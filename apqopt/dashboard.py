"""apqopt dashboard: review recorded searches (`apqopt dashboard --storage URL`, or
`streamlit run dashboard/app.py -- --storage URL [--lut TABLE]`).

Pages: Studies (with one study's front, trial table, history, importance), Compare searchers, Candidate
inspector, Predictor, LUT explorer. Everything a page shows comes from the storage being viewed (through
``apqopt.review.StudyReader``: SQLite read-only, plain SQL queries) -- never from the working directory.
The sidebar polls the storage's version every ``POLL_S`` seconds and reruns the app when it moved, so
running studies and new ones show up without a click. The LUT explorer reads the shipped tables or the
one given with ``--lut``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from apqopt.hardware.lut import LUT, LUTError, load_shipped
from apqopt.record import StudyRecord, quiet_optuna
from apqopt.review import StudyReader, front_of
from apqopt.search.verdict import all_verdicts
from apqopt.settings import default_storage
from apqopt.shipped import tables_dir
from apqopt.space import BIT_FIELDS, get_space
from apqopt.studies import StorageError

PAGES = ["Studies", "Compare searchers", "Candidate inspector", "Predictor", "LUT explorer"]
POLL_S = float(os.environ.get("APQOPT_DASHBOARD_POLL", "5"))  # seconds between checks for a changed storage
# Okabe & Ito's colour-blind-safe palette (yellow last: weakest on white), one colour per searcher
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
SEED_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "triangle-down", "pentagon", "hexagon", "star"]
SEED_DASHES = ["solid", "dot", "dash", "dashdot", "longdash", "longdashdot"]
DOMINATED = {"color": "#BBBBBB", "size": 4, "symbol": "circle"}
INFEASIBLE = {"color": "#444444", "size": 6, "symbol": "x", "opacity": 0.6}
OTHERS = "(studies not from a compare run)"
INSPECT = "Candidate inspector"
MAX_DRAWN = 5_000  # other trials drawn under the fronts at most, per kind (dominated, infeasible)


def _arg(flag: str) -> str | None:
    args = sys.argv[1:]
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


NONE = StudyRecord()  # what an unknown study's record reads as


def storage_url() -> str:
    return _arg("--storage") or os.environ.get("APQOPT_STORAGE") or default_storage()


@st.cache_resource(show_spinner=False)
def reader(url: str) -> StudyReader:
    return StudyReader(url)


# Every read is cached under the storage's version (StudyReader.version): a page re-reads only what was
# written since, and the sidebar's watcher reruns the app when the version moves.
@st.cache_data(show_spinner=False, max_entries=4)
def studies(url: str, version: tuple[Any, ...]) -> pd.DataFrame:
    return reader(url).studies(lambda name: trials(url, name, version))


@st.cache_data(show_spinner=False, max_entries=4)
def attrs(url: str, version: tuple[Any, ...]) -> dict[str, StudyRecord]:
    return reader(url).study_records()


@st.cache_data(show_spinner=False, max_entries=256)
def trials(url: str, study: str, version: tuple[Any, ...]) -> pd.DataFrame:
    return reader(url).trials(study)


@st.cache_data(show_spinner=False, max_entries=256)
def front(url: str, study: str, version: tuple[Any, ...]) -> pd.DataFrame:
    return front_of(trials(url, study, version))


@st.cache_data(show_spinner="reading the trials' networks...", max_entries=8)
def features(url: str, study: str, version: tuple[Any, ...]) -> pd.DataFrame:
    return reader(url).features(study, trials=trials(url, study, version))


@st.fragment(run_every=POLL_S)
def watch(url: str, version: tuple[Any, ...] | None, read_at: float) -> None:
    """Polls the storage's version; reruns the whole app when something was written since it was read."""
    try:
        now = reader(url).version()
    except StorageError:
        now = None
    if now != version:
        st.rerun(scope="app")
    st.caption(
        f"read {time.strftime('%H:%M:%S', time.localtime(read_at))}; checked for changes "
        f"{time.strftime('%H:%M:%S')} (every {POLL_S:g} s)"
    )


def colours(names: list[str]) -> dict[str, str]:
    """One colour per searcher, the same in every chart (sorted names, so it does not depend on the pick)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(set(names)))}


def _inspect(chart: str) -> None:
    """``on_select`` of every front: open the clicked candidate (customdata: study, trial) in the inspector."""
    event = st.session_state.get(chart) or {}
    for point in event.get("selection", {}).get("points", []):
        data = point.get("customdata")
        if data:
            study, number = str(data[0]), int(data[1])
            st.session_state["insp_study"] = study
            st.session_state[f"insp_trial_{study}"] = number
            st.session_state["page"] = INSPECT
            return


def _custom(studies: pd.Series | str, numbers: pd.Series) -> np.ndarray:
    """(study, trial) per point: what a click hands the inspector."""
    names = np.full(len(numbers), studies, dtype=object) if isinstance(studies, str) else studies.to_numpy(object)
    return np.column_stack([names, numbers.to_numpy(object)])


def front_figure(
    fronts: list[dict[str, Any]], rest: pd.DataFrame, colour: dict[str, str], limit: float | None
) -> go.Figure:
    """Fronts over the other trials. ``fronts``: one dict per study (study, searcher, seed, front, measured);
    ``rest``: the other complete trials (with a ``study`` column). A searcher is a colour, a seed a marker and
    a dash; dominated trials are grey dots, infeasible ones dark crosses; every point carries (study, trial)
    so a click opens it in the inspector."""
    fig = go.Figure()
    for feasible, label, marker in ((True, "dominated", DOMINATED), (False, "infeasible", INFEASIBLE)):
        part = rest[rest["feasible"] == feasible] if len(rest) else rest
        if len(part):
            n = len(part)
            if n > MAX_DRAWN:  # an even sample: 50,000 grey points cost seconds per render and show no more
                part = part.iloc[np.linspace(0, n - 1, MAX_DRAWN).astype(int)]
            fig.add_trace(
                go.Scattergl(
                    x=part["latency"],
                    y=part["accuracy"],
                    mode="markers",
                    marker=marker,
                    name=f"{label} trials ({n:,}{f'; {MAX_DRAWN:,} drawn' if n > MAX_DRAWN else ''})",
                    customdata=_custom(part["study"], part["number"]),
                    hovertemplate="%{customdata[0]} trial %{customdata[1]}<br>%{y:.4f} at %{x:.3f} ms<extra></extra>",
                )
            )
    seeds = sorted({f["seed"] for f in fronts if f["seed"] is not None})
    shown: set[str] = set()
    for f in fronts:
        s, k = f["searcher"], seeds.index(f["seed"]) if f["seed"] in seeds else 0
        label = s if f["seed"] is None else f"{s} seed {f['seed']}"
        if len(f["front"]):
            fig.add_trace(
                go.Scatter(
                    x=f["front"]["latency"],
                    y=f["front"]["accuracy"],
                    mode="lines+markers",
                    line_shape="hv",
                    line={"color": colour[s], "width": 1.5, "dash": SEED_DASHES[k % len(SEED_DASHES)]},
                    marker={"size": 7, "symbol": SEED_SYMBOLS[k % len(SEED_SYMBOLS)], "color": colour[s]},
                    name=label,
                    legendgroup=s,
                    customdata=_custom(f["study"], f["front"]["number"]),
                    hovertemplate=f"{f['study']}: trial %{{customdata[1]}}<br>predicted %{{y:.4f}} at "
                    "%{x:.3f} ms<extra></extra>",
                )
            )
        m = f["measured"]
        if len(m):
            fig.add_trace(
                go.Scatter(
                    x=m["latency"],
                    y=m["measured"],
                    error_y={"type": "data", "array": m["stderr"].fillna(0)},
                    mode="markers",
                    marker={"symbol": "x", "size": 10, "color": colour[s]},
                    name=f"{s} measured ± SE",
                    legendgroup=s,
                    showlegend=f"{s} m" not in shown,
                    customdata=_custom(f["study"], m["number"]),
                    hovertemplate=f"{f['study']}: trial %{{customdata[1]}}<br>measured %{{y:.4f}}<extra></extra>",
                )
            )
            shown.add(f"{s} m")
    if limit is not None:
        fig.add_vline(x=limit, line_dash="dash", line_color="red", annotation_text=f"latency limit {limit:g} ms")
    fig.update_layout(
        xaxis_title="latency (ms)",
        yaxis_title="accuracy (predicted; x measured)",
        height=480,
        clickmode="event+select",
        legend={"itemsizing": "constant"},
    )
    return fig


def study_fronts(
    url: str, v: tuple[Any, ...], names: list[str], meta: dict[str, StudyRecord]
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """What :func:`front_figure` draws for the given studies."""
    fronts, rest = [], []
    for name in names:
        df = trials(url, name, v)
        done = df[df["state"] == "COMPLETE"]
        f = front(url, name, v)
        rest.append(done[~done["number"].isin(f["number"])].assign(study=name))
        fronts.append(
            {
                "study": name,
                "searcher": meta.get(name, NONE).searcher or "?",
                "seed": meta.get(name, NONE).seed,
                "front": f,
                "measured": done.dropna(subset=["measured"]),
            }
        )
    return fronts, pd.concat(rest) if rest else pd.DataFrame()


def show_front(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, width="stretch", key=key, on_select=lambda: _inspect(key), selection_mode="points")
    st.caption("Click a point to open that candidate in the Candidate inspector.")


# ---------------------------------------------------------------------- Studies
def page_studies(url: str, v: tuple[Any, ...], table: pd.DataFrame) -> None:
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
    with_trials = view[view["trials"] > 0]["study"].tolist()
    if with_trials:
        one_study(url, v, st.selectbox("one study", with_trials, key="study_pick"))


def one_study(url: str, v: tuple[Any, ...], name: str) -> None:
    """One study in depth: its front, its trials (filter, sort, CSV), what drives its accuracy and cost."""
    meta = attrs(url, v)
    views = ["Front", "Trials", "History", "Importance", "Parallel coordinates"]
    view = st.segmented_control("view", views, default="Front", key="study_view") or "Front"
    if view == "Front":  # one view at a time: the others read every trial's network, or fit a forest
        fronts, rest = study_fronts(url, v, [name], meta)
        limit = meta.get(name, NONE).constraints.get("latency")
        show_front(front_figure(fronts, rest, colours([f["searcher"] for f in fronts]), limit), "study_front")
    elif view == "History":
        history(trials(url, name, v))
    elif view == "Trials":
        trial_table(name, features(url, name, v), len(trials(url, name, v)))
    elif view == "Importance":
        importance(name, features(url, name, v))
    else:
        df = features(url, name, v)
        feats = [c for c in FEATURE_ORDER if c in df.columns] + [c for c in df.columns if c.endswith("_w_bits")]
        ok = df[df["feasible"]]
        if len(ok) > 1:
            fig = px.parallel_coordinates(
                ok[[*feats, "latency", "accuracy"]].dropna(axis=1),
                color="accuracy",
                color_continuous_scale=px.colors.sequential.Viridis,
            )
            st.plotly_chart(fig, width="stretch")
            st.caption(f"{len(ok):,} feasible trials; drag along an axis to filter.")
        else:
            st.info("Fewer than two feasible trials.")


FEATURE_ORDER = ["depth", "kernel", "width", "w_bits", "a_bits"]


def trial_table(name: str, df: pd.DataFrame, n_trials: int) -> None:
    c = st.columns(3)
    only_feasible = c[0].checkbox("feasible only", key="trials_feasible")
    only_measured = c[1].checkbox("measured only", key="trials_measured")
    lo = c[2].number_input("accuracy at least", 0.0, 1.0, 0.0, step=0.01, key="trials_min_acc")
    view = df[df["accuracy"] >= lo]
    if only_feasible:
        view = view[view["feasible"]]
    if only_measured:
        view = view[view["measured"].notna()]
    st.dataframe(view, hide_index=True, width="stretch", key="trials_table")
    left = n_trials - len(df)
    st.caption(
        f"{len(view):,} of {len(df):,} complete trials shown (click a header to sort)"
        + (f"; {left:,} trials not read (running, failed, or past the sample of big studies)" if left else "")
    )
    st.download_button(
        "download CSV", view.to_csv(index=False), file_name=f"{name}-trials.csv", mime="text/csv", key="trials_csv"
    )


def history(df: pd.DataFrame) -> None:
    done = df[df["state"] == "COMPLETE"].sort_values("number")
    if not len(done):
        st.info("No complete trials yet.")
        return
    best = done["accuracy"].where(done["feasible"]).cummax()
    fig = go.Figure()
    for feasible, label, marker in ((True, "feasible", DOMINATED), (False, "infeasible", INFEASIBLE)):
        part = done[done["feasible"] == feasible]
        fig.add_trace(go.Scattergl(x=part["number"], y=part["accuracy"], mode="markers", marker=marker, name=label))
    fig.add_trace(go.Scatter(x=done["number"], y=best, line={"color": PALETTE[0]}, name="best feasible so far"))
    fig.update_layout(xaxis_title="trial", yaxis_title="predicted accuracy", height=380)
    st.plotly_chart(fig, width="stretch")


IMPORTANCE_ROWS = 300  # trials fANOVA fits on at most: its cost grows faster than linearly (3 s at 300)


def importance(name: str, df: pd.DataFrame) -> None:
    target = st.radio("importance for", ["accuracy", "latency"], horizontal=True, key="importance_target")
    ok = df[df["feasible"]] if target == "accuracy" else df
    if len(ok) < 10:
        st.info("Importance needs at least 10 trials.")
        return
    scores = feature_importance(ok, target)
    fig = px.bar(x=list(scores.values()), y=list(scores), orientation="h", labels={"x": "importance", "y": ""})
    fig.update_layout(yaxis={"autorange": "reversed"}, height=60 + 28 * len(scores))
    st.plotly_chart(fig, width="stretch")
    st.caption(
        f"Optuna's fANOVA on {min(len(ok), IMPORTANCE_ROWS):,} {'feasible ' if target == 'accuracy' else ''}trials "
        f"of '{name}', over the networks' summarised features (share of {target} variance each explains)."
    )


@st.cache_data(show_spinner="fitting fANOVA...", max_entries=16)
def feature_importance(df: pd.DataFrame, target: str) -> dict[str, float]:
    """Optuna's fANOVA importance of the summarised features for ``target``: an in-memory study whose params
    are the features, so Optuna's own evaluator does the work."""
    import optuna
    from optuna.distributions import FloatDistribution

    df = df.sample(min(len(df), IMPORTANCE_ROWS), random_state=0) if len(df) > IMPORTANCE_ROWS else df
    feats = [c for c in df.columns if c in FEATURE_ORDER or c.startswith("share_") or c.endswith("_w_bits")]
    feats = [c for c in feats if df[c].notna().all() and df[c].nunique() > 1]
    dists = {c: FloatDistribution(float(df[c].min()), float(df[c].max())) for c in feats}
    with quiet_optuna():
        study = optuna.create_study(direction="maximize" if target == "accuracy" else "minimize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={c: float(r[c]) for c in feats}, distributions=dists, value=float(r[target])
            )
            for _, r in df.iterrows()
        ]
    )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


# ---------------------------------------------------------------------- Compare searchers
def compare_runs(table: pd.DataFrame, meta: dict[str, StudyRecord]) -> dict[str, list[str]]:
    """Studies grouped by the compare run that recorded them (its tag); the rest under OTHERS."""
    runs: dict[str, list[str]] = {}
    for name in table["study"]:
        runs.setdefault(meta.get(name, NONE).compare_tag or OTHERS, []).append(name)
    return dict(sorted(runs.items(), key=lambda kv: (kv[0] == OTHERS, kv[0])))


def page_compare(url: str, v: tuple[Any, ...], table: pd.DataFrame) -> None:
    st.header("Compare searchers")
    meta = attrs(url, v)
    runs = compare_runs(table, meta)
    run = st.selectbox("compare run", list(runs), key="cmp_run")
    names = st.multiselect("studies", runs[run], default=runs[run], key=f"cmp_studies_{run}")
    if not names:
        st.info("Pick studies to compare.")
        return
    searcher_of = {n: meta.get(n, NONE).searcher or "?" for n in names}
    colour = colours(list(table["searcher"]))
    limit = next((meta[n].constraints["latency"] for n in names if "latency" in meta.get(n, NONE).constraints), None)
    fronts, rest = study_fronts(url, v, names, meta)
    show_front(front_figure(fronts, rest, colour, limit), "cmp_front")
    rows = [
        {
            "study": f["study"],
            "searcher": f["searcher"],
            "seed": f["seed"],
            "front_size": len(f["front"]),
            "best_accuracy": float(f["front"]["accuracy"].max()) if len(f["front"]) else None,
            "hypervolume": meta.get(f["study"], NONE).hypervolume,
            "measured hypervolume": meta.get(f["study"], NONE).measured_hypervolume,
        }
        for f in fronts
    ]
    st.subheader("Metrics")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

    curves = [
        {"searcher": searcher_of[n], "seed": meta[n].seed, "evaluations": c, "hypervolume": hv}
        for n in names
        for c, hv in meta.get(n, NONE).hv_curve
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
    measured = all(meta.get(n, NONE).measured_hypervolume is not None for n in names)
    for n in names:
        r = meta.get(n, NONE)
        score = r.measured_hypervolume if measured else r.hypervolume
        if score is not None and r.seed is not None:
            by.setdefault(searcher_of[n], {})[int(r.seed)] = float(score)
    if len(by) > 1:
        st.subheader(f"Verdicts ({'measured' if measured else 'predicted'} hypervolume, paired over seeds)")
        ranked = dict(sorted(by.items(), key=lambda kv: -np.mean(list(kv[1].values()))))
        st.markdown("\n".join(f"- {v.line()}" for v in all_verdicts(ranked, "measured HV" if measured else "HV")))


# ---------------------------------------------------------------------- Candidate inspector
def _picked(widget: str, num_key: str) -> None:
    st.session_state[num_key] = int(st.session_state[widget])


def page_inspector(url: str, v: tuple[Any, ...], table: pd.DataFrame) -> None:
    st.header(INSPECT)
    studies_list = table["study"].tolist()
    if st.session_state.get("insp_study") not in studies_list:
        st.session_state["insp_study"] = studies_list[0]
    name = st.selectbox("study", studies_list, key="insp_study")
    df = trials(url, name, v)
    done = df[df["state"] == "COMPLETE"]
    if not len(done):
        st.warning(f"Study '{name}' has no completed trials.")
        return
    f = front(url, name, v).sort_values("accuracy", ascending=False)
    pool = f if len(f) else done.sort_values("accuracy", ascending=False).head(50)
    label = {int(r.number): f"trial {r.number}: {r.accuracy:.4f} at {r.latency:.3f} ms" for r in done.itertuples()}
    # One trial number per study in session state: the picker, the number box and a click on a front each
    # set it (in their callbacks), and both widgets are set to show it before they are drawn -- a widget's
    # own value would go stale when another one changes the trial.
    num_key, pick_key, typed_key = f"insp_trial_{name}", f"insp_pick_{name}", f"insp_typed_{name}"
    asked = st.session_state.get(num_key)
    if asked not in label:
        if asked is not None:
            st.warning(f"Study '{name}' has no completed trial {asked}; showing its most accurate candidate.")
        st.session_state[num_key] = int(pool["number"].iloc[0])
    number = int(st.session_state[num_key])
    options = [int(n) for n in pool["number"]]
    st.session_state[pick_key] = st.session_state[typed_key] = number
    st.selectbox(
        "candidate (the feasible front, most accurate first)" if len(f) else "candidate (no feasible one)",
        options if number in options else [number, *options],
        format_func=lambda n: label[n],
        key=pick_key,
        on_change=_picked,
        args=(pick_key, num_key),
    )
    with st.expander("another trial by number"):
        st.number_input(
            "trial number", min_value=0, step=1, key=typed_key, on_change=_picked, args=(typed_key, num_key)
        )
    r = done[done["number"] == number].iloc[0]
    cand = reader(url).candidate(name, number)
    space = get_space(cand.space)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("predicted accuracy", f"{r['accuracy']:.4f}")
    c2.metric(
        "measured accuracy ± SE",
        "—" if np.isnan(r["measured"]) else f"{r['measured']:.4f} ± {0 if np.isnan(r['stderr']) else r['stderr']:.4f}",
    )
    c3.metric("latency (ms)", f"{r['latency']:.3f}")
    c4.metric("energy (mJ)", f"{r['energy']:.3f}")
    c5.metric("feasible", "yes" if r["feasible"] else "no")
    st.caption(f"trial {number} of '{name}'")
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
    except LUTError as exc:
        st.info(f"No per-layer breakdown: {exc}")
    else:
        layers = layer_costs(cost)
        st.subheader("Per-layer cost (shipped table)")
        per = layers.melt(id_vars=["layer"], value_vars=["latency_ms", "energy_mJ"])
        st.plotly_chart(
            px.bar(per, x="layer", y="value", facet_row="variable", height=420).update_yaxes(matches=None),
            width="stretch",
        )
        st.dataframe(layers, hide_index=True, width="stretch")
        st.caption(
            f"The rows sum to {layers['latency_ms'].sum():.3f} ms and {layers['energy_mJ'].sum():.3f} mJ: the "
            "candidate's cost (stem and classifier are fixed in every candidate)."
        )
    st.subheader("Rebuild it")
    st.code(f"from apqopt import Candidate\ncandidate = Candidate.from_json({cand.to_json()!r})", language="python")


def layer_costs(cost: Any) -> pd.DataFrame:
    """Every priced part of a candidate, the fixed stem and classifier included, so the rows sum to its cost."""
    rows = [{"layer": "stem (fixed)", "shape": "", "bits": "", "latency_ms": cost.head[0], "energy_mJ": cost.head[1]}]
    rows += [
        {
            "layer": ly.name,
            "shape": str(ly.shape),
            "bits": f"W{ly.w_bits}A{ly.a_bits}",
            "latency_ms": lat,
            "energy_mJ": en,
        }
        for ly, lat, en in cost.layers
    ]
    rows.append(
        {"layer": "classifier (fixed)", "shape": "", "bits": "", "latency_ms": cost.tail[0], "energy_mJ": cost.tail[1]}
    )
    return pd.DataFrame(rows)


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
def page_predictor(url: str, v: tuple[Any, ...], table: pd.DataFrame) -> None:
    st.header("Predictor")
    df, repeats = verified_networks(url, v, table["study"].tolist())
    if not len(df):
        st.info("No verified candidates yet: run `apqopt verify --study NAME` to measure a study's front.")
        return
    from apqopt.predictor.metrics import ranking_report

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
    if repeats:
        st.caption(
            f"{repeats} measurement(s) of networks already counted (the same network verified in another "
            "study) are left out: n counts distinct networks, each with its first measurement."
        )


@st.cache_data(show_spinner=False, max_entries=4)
def verified_networks(url: str, v: tuple[Any, ...], names: list[str]) -> tuple[pd.DataFrame, int]:
    """Every measured network once (a network verified in several studies counts once), and how many
    repeated measurements were left out."""
    rows, seen, repeats = [], set(), 0
    meta = attrs(url, v)
    for name in names:
        df = trials(url, name, v).dropna(subset=["measured"])
        if not len(df):
            continue
        found, genes = reader(url).genes(name, df["number"].tolist())
        key_of = {int(n): (meta[name].space_name, g.tobytes()) for n, g in zip(found, genes)}
        for r in df.itertuples():
            key = key_of.get(int(r.number), (name, r.number))
            if key in seen:
                repeats += 1
                continue
            seen.add(key)
            rows.append({"study": name, "predicted": r.accuracy, "measured": r.measured, "stderr": r.stderr})
    df = pd.DataFrame(rows, columns=["study", "predicted", "measured", "stderr"])
    df["stderr"] = df["stderr"].fillna(0)
    return df, repeats


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
    if page == "LUT explorer":
        page_lut()
        return
    try:
        v = reader(url).version()
    except StorageError as exc:
        with st.sidebar:
            watch(url, None, time.time())
        st.warning(f"No storage to show: {exc}. Run `apqopt search` or `apqopt compare` first.")
        return
    with st.sidebar:
        watch(url, v, time.time())
    table = studies(url, v)
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
        INSPECT: page_inspector,
        "Predictor": page_predictor,
    }[page](url, v, table)


if __name__ == "__main__":  # `streamlit run apqopt/dashboard.py` runs the module as a script
    main()
