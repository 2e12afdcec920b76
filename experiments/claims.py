"""The paper's claims, quoted exactly, and the evidence that decides each, declared before it runs.

Every claim is one sentence of the paper with its source; every question names its primary
comparison (the paper's schedule and Δ against abrupt, at the paper's readout), the runs
(experiment and preset, hence the seeds) that hold its arms, and, for a claim that gradual
change preserves something, the abrupt arm's own drop that must be shown before it is posed
(``min_drop``). Secondary comparisons and extensions beyond the paper are labelled so; they
never decide a claim. The runs that decide use fresh seeds (``experiments.VERDICT_SEEDS``) that no search
and no earlier committed run uses; ``gradual-jax report`` refuses a run whose seeds overlap its
search's.
"""

from gradual_jax.analysis.claims import AllChecksHold, Arm, Claim, FinerVersusCoarser, Question, Run, Versus

ACC, TEST_ACC, TRAIN_BLEU, TEST_BLEU = "online_train_acc", "test_acc", "train_bleu2", "test_bleu2"
TASKS_LEARNED = "test_bleu2_learned"  # 1 where a task's test BLEU-2 reaches 0.5 (gradual_jax.analysis.runs.DERIVED)

MLP = Run("fig1-mnist", "verdict")
MLP_METHODS = Run("fig1-mnist", "verdict-methods")
MLP_E20 = Run("fig1-mnist", "verdict-e20")
MLP_CRELU_FRESH = (Run("fig1-mnist", "verdict-crelu-fresh", "mlp"), Run("fig1-mnist", "verdict-crelu-fresh", "crelu"))
MLP_STUDY = Run("fig1-mnist", "study")  # 3 seeds, every mitigation at once: L2 and L2-init at chance
# its setting comes from the fig1-cifar tasks32 search; each group of arms runs in two halves by seed
RESNET = tuple(Run("fig1-cifar", f"verdict-seeds{s}") for s in ("10-13", "14-17"))
RESNET_METHODS = tuple(Run("fig1-cifar", f"{group}-seeds{s}")  # the same seeds, read with RESNET by arm
                       for group in ("verdict-methods-sp-redo", "verdict-methods-spectral-l2", "verdict-coarse-l2init")
                       for s in ("10-13", "14-17"))
SEQ2SEQ = Run("fig2-seq2seq", "verdict")
SEQ2SEQ_METHODS = Run("fig2-seq2seq", "verdict-baselines")
EMNIST = Run("fig3-emnist", "verdict")
EMNIST_STUDY = Run("fig3-emnist", "study")  # 3 seeds, Δ ∈ {0.5, 0.1, 0.05}
CIPHER = Run("fig4-cipher", "verdict")
THEORY = Run("theory", "cpu", out="theory")

MARGIN = 0.05  # "matching": the gradual arm is at most this far below a mitigation (interval's lower end)
PAPER_MITIGATIONS_MLP = ("shrink_perturb", "redo", "spectral")  # those the paper runs; L2 and L2-init below
PAPER_MITIGATIONS_T5 = ("l2", "shrink_perturb", "redo", "spectral")


def _versus(schedule: str, delta: float, method: str = "none", model: str | None = None) -> Versus:
    return Versus(Arm(schedule, delta), Arm("abrupt", method=method, model=model))


FIG1 = Claim(
    "fig1", "Fig. 1 caption",
    "Output interpolation is more effective than other plasticity mitigation methods for these vision benchmarks.",
    questions=(
        *(Question(f"MLP, random-label MNIST: output interpolation Δ=0.5 − abrupt + {m}", ACC,
                   _versus("output_interp", 0.5, m), (MLP, MLP_METHODS)) for m in PAPER_MITIGATIONS_MLP),
        Question("ResNet-18, random-label images: output interpolation Δ=0.05 − abrupt + each mitigation", ACC,
                 Versus(Arm("output_interp", 0.05), Arm("abrupt", method="*")), (*RESNET, *RESNET_METHODS),
                 search="fig1-cifar"),
        Question("MLP: output interpolation Δ=0.1 − abrupt + each mitigation (finer than the paper's Δ)", ACC,
                 Versus(Arm("output_interp", 0.1), Arm("abrupt", method="*")), (MLP, MLP_METHODS),
                 role="secondary"),
        *(Question(f"MLP: output interpolation Δ=0.5 − abrupt + {m} (3 seeds)", ACC,
                   _versus("output_interp", 0.5, m), (MLP_STUDY,), role="secondary") for m in ("l2", "l2_init")),
        Question("MLP: output interpolation Δ=0.5 − abrupt + continual backprop (not in the paper)", ACC,
                 _versus("output_interp", 0.5, "cbp"), (MLP, MLP_METHODS), role="extension"),
        Question("MLP: output interpolation Δ=0.5 − abrupt with CReLU (not in the paper)", ACC,
                 Versus(Arm("output_interp", 0.5, model="mlp"), Arm("abrupt", model="crelu_mlp")),
                 MLP_CRELU_FRESH, role="extension",
                 revised="the gate asked whether abrupt CReLU loses plasticity (it did not, so the question read "
                         "not posed); it now asks whether the plain network's abrupt arm does, as for every "
                         "other mitigation"),
    ))

FIG2 = Claim(
    "fig2", "Fig. 2 caption", "Task sampling effectively mitigates loss of trainability.",
    questions=(
        Question("T5, random seq2seq: task sampling Δ=0.02 − abrupt", TRAIN_BLEU, _versus("task_sampling", 0.02),
                 (SEQ2SEQ,), search="fig2-seq2seq"),
        Question("T5: task sampling Δ=0.1 − abrupt (coarser than the paper's Δ)", TRAIN_BLEU,
                 _versus("task_sampling", 0.1), (SEQ2SEQ,), role="secondary", search="fig2-seq2seq"),
    ))

FIG3 = Claim(
    "fig3", "Fig. 3 caption", "Generalizability is well preserved in a gradually changing environment.",
    questions=(
        Question("MLP, permuted pixels: input interpolation Δ=0.05 − abrupt", TEST_ACC, _versus("input_interp", 0.05),
                 (EMNIST,)),
        Question("MLP, permuted pixels: input interpolation Δ=0.05 − abrupt (3 seeds)", TEST_ACC,
                 _versus("input_interp", 0.05), (EMNIST_STUDY,), role="secondary"),
    ))

FIG4 = Claim(
    "fig4", "Fig. 4 caption",
    "The gradually changing environment is effective in maintaining test BLEU2 score on new tasks.",
    questions=(
        Question("T5, bigram cipher: task sampling Δ=0.02 − abrupt", TEST_BLEU, _versus("task_sampling", 0.02),
                 (CIPHER,), search="fig4-cipher"),
        Question("T5, bigram cipher: share of tasks learned (test BLEU-2 ≥ 0.5; 1 − the share failed), "
                 "task sampling Δ=0.02 − abrupt", TASKS_LEARNED, _versus("task_sampling", 0.02), (CIPHER,),
                 role="secondary", search="fig4-cipher"),
    ))

FIG5 = Claim(
    "fig5", "Fig. 5 caption",
    "A smaller step size simulates gradually changing environment better and retains more plasticity.",
    questions=(
        Question("MLP, random-label MNIST: output interpolation Δ=0.1 − Δ=0.5", ACC,
                 FinerVersusCoarser("output_interp"), (MLP,)),
        Question("MLP, permuted pixels: input interpolation, each Δ − the next coarser (3 seeds)", TEST_ACC,
                 FinerVersusCoarser("input_interp"), (EMNIST_STUDY,), role="secondary"),
    ))

TLDR = Claim(
    "tldr", "TL;DR",
    "Empirically, the approach preserves trainability and generalization across vision benchmarks and language "
    "tasks, often matching or surpassing traditional abrupt-change mitigations.",
    questions=(
        Question("MLP, random-label MNIST: output interpolation Δ=0.5 − abrupt", ACC, _versus("output_interp", 0.5),
                 (MLP,)),
        Question("ResNet-18, random-label images: output interpolation Δ=0.05 − abrupt", ACC,
                 _versus("output_interp", 0.05), RESNET, search="fig1-cifar"),
        Question("ResNet-18: output interpolation Δ=0.5 − abrupt (coarser than the paper's Δ)", ACC,
                 _versus("output_interp", 0.5), (*RESNET, *RESNET_METHODS), role="secondary", search="fig1-cifar"),
        *(Question(f"MLP: output interpolation Δ=0.5 matches or surpasses abrupt + {m} (within {MARGIN})", ACC,
                   _versus("output_interp", 0.5, m), (MLP, MLP_METHODS), margin=MARGIN)
          for m in PAPER_MITIGATIONS_MLP),
        *(Question(f"T5: task sampling Δ=0.02 matches or surpasses abrupt + {m} (within {MARGIN})", TRAIN_BLEU,
                   _versus("task_sampling", 0.02, m), (SEQ2SEQ, SEQ2SEQ_METHODS), margin=MARGIN,
                   search="fig2-seq2seq")
          for m in PAPER_MITIGATIONS_T5),
        Question("MLP: output interpolation Δ=0.1 − abrupt (finer than the paper's Δ)", ACC,
                 _versus("output_interp", 0.1), (MLP,), role="secondary"),
        Question("MLP at E = 20 over 30 tasks: output interpolation Δ=0.5 − abrupt", ACC,
                 _versus("output_interp", 0.5), (MLP_E20,), role="secondary"),
    ),
    summarises=("fig2", "fig3", "fig4"))

ABSTRACT = Claim(
    "abstract", "Abstract",
    "We perform theoretical and empirical analysis, showing that the loss of plasticity is an artifact of abrupt "
    "tasks changes in the environment and can be largely mitigated if the world changes gradually.",
    summarises=("tldr", "fig2", "fig3", "fig4", "lemma"))

LEMMA = Claim(
    "lemma", "Lemma 4.3",
    "Gradient descent started inside an (r, μ)-locally strongly convex domain of a β-smooth f, with step size "
    "η ≤ min(1/β, …), stays in it and converges linearly.",
    questions=(Question("the theory check: every numerical check of the lemma holds", "holds", AllChecksHold(),
                        (THEORY,), min_drop=None),),
    verbatim=False)

CLAIMS = (ABSTRACT, TLDR, FIG1, FIG2, FIG3, FIG4, FIG5, LEMMA)
