"""What each day of docs/days/ runs on the synthetic data set: its commands, the days whose results
it needs, the figures it shows and the mistakes whose error lines it quotes.

    >>> LESSONS["3"].page, LESSONS["3"].needs
    ('day03.md', ('1',))
    >>> LESSONS["1"].runs[0].argv
    ('--config', 'cfgs/quickstart.yaml')

The commands are the ones a learner types (paths under results/, the quickstart config); `tiny`
holds the small settings the lessons' generator appends so every day runs in seconds on one
thread. The page shows both.
"""

from __future__ import annotations

from dataclasses import dataclass

# 512 training and 256 test images, 2 epochs, 1 fine-tuning epoch: seconds per command on one core
TINY = ("data.synthetic.train_size=256", "data.synthetic.test_size=128", "train.epochs=2", "finetune.epochs=1")
# a structured run times its model on ONNX Runtime too (quickstart's structured.latency.report); a
# busy machine moves that figure by tens of points, so the lessons' small runs leave it out
TINY_STRUCTURED = TINY + ("structured.latency.report=false",)
BASELINE = "results/train/quickstart/best_model.pth"
STRUCTURED_MACS50 = "results/structured/l2_macs0.5/pruned_model.pth"


# a profile's lines whose words follow the timings: the noise, the speed-ups' advice, the slowest layers' order
PROFILE_VOLATILE = (
    r"noise p90/median",
    r"^latency_ms",
    r"^  \S+ +(torch|onnxruntime) +batch",
    r"^ {6}\S",
    r"^  [\w.]+ +[A-Z]\w+ +… ms",
)


@dataclass(frozen=True)
class LessonRun:
    script: str  # scripts.<script>
    argv: tuple[str, ...]
    tiny: tuple[str, ...] = TINY  # --set values appended by the generator


@dataclass(frozen=True)
class Problem:
    run: LessonRun  # must fail with one error line, before any training (so it runs without `tiny`)
    why: str  # what the learner did wrong, in a sentence


@dataclass(frozen=True)
class Lesson:
    day: str
    runs: tuple[LessonRun, ...]
    needs: tuple[str, ...] = ()  # days whose results this day reads, in order
    figures: tuple[tuple[str, str], ...] = ()  # (path in the workspace, caption)
    problems: tuple[Problem, ...] = ()
    volatile: tuple[str, ...] = ()  # regexes of output lines --check skips: their words follow the timings

    @property
    def page(self) -> str:
        digits = "".join(c for c in self.day if c.isdigit())
        return f"day{int(digits):02d}{self.day[len(digits) :]}.md"


def unstructured(*flags: str) -> LessonRun:
    return LessonRun("prune_unstructured", ("--checkpoint", BASELINE, *flags))


def structured(*flags: str) -> LessonRun:
    return LessonRun("prune_structured", ("--checkpoint", BASELINE, *flags), TINY_STRUCTURED)


def _lessons() -> tuple[Lesson, ...]:
    return (
        (
            Lesson(
                "1",
                (LessonRun("train", ("--config", "cfgs/quickstart.yaml")),),
                problems=(
                    Problem(LessonRun("train", ("--config", "cfgs/quickstart.yml")), "A config path with a typo."),
                    Problem(
                        LessonRun("train", ("--config", "cfgs/quickstart.yaml", "--set", "train.optimiser=adam")),
                        "A misspelt config key in `--set`.",
                    ),
                ),
            ),
            Lesson(
                "2",
                (LessonRun("eval", ("--checkpoint", BASELINE, "--measure-latency")),),
                needs=("1",),
                problems=(
                    Problem(
                        LessonRun("eval", ("--checkpoint", "results/train/quickstart/best.pth")),
                        "A checkpoint that is not there (the file is `best_model.pth`).",
                    ),
                ),
            ),
            Lesson(
                "3",
                (unstructured("--method", "l1", "--sparsity", "0.5"),),
                needs=("1",),
                figures=(
                    (
                        "results/unstructured/l1_layerwise_sp0.5/layer_weights.png",
                        "L1 at 50%: each layer's remaining weights (histogram) and its sparsity",
                    ),
                ),
                problems=(
                    Problem(
                        unstructured("--method", "l1", "--sparsity", "1.0"),
                        "A sparsity of 1 would remove every weight.",
                    ),
                    Problem(unstructured("--method", "l3", "--sparsity", "0.5"), "An unknown method."),
                ),
            ),
            Lesson(
                "4",
                (
                    unstructured("--method", "global", "--sparsity", "0.8"),
                    unstructured("--method", "l1", "--sparsity", "0.8"),
                ),
                needs=("1",),
                figures=(
                    (
                        "results/unstructured/global_global_sp0.8/layer_weights.png",
                        "Global at 80%: each layer's remaining weights and its sparsity",
                    ),
                    (
                        "results/unstructured/l1_layerwise_sp0.8/layer_weights.png",
                        "Layerwise at 80%: each layer's remaining weights and its sparsity",
                    ),
                ),
            ),
            Lesson(
                "5",
                (unstructured("--method", "lamp", "--sparsity", "0.9"),),
                needs=("1",),
                figures=(
                    (
                        "results/unstructured/lamp_global_sp0.9/layer_weights.png",
                        "LAMP at 90%: each layer's remaining weights and its sparsity",
                    ),
                ),
            ),
            Lesson(
                "6",
                (
                    unstructured(
                        "--method",
                        "global",
                        "--sparsity",
                        "0.9",
                        "--iterative",
                        "--num-iterations",
                        "5",
                        "--schedule",
                        "cubic",
                    ),
                ),
                needs=("1",),
                figures=(
                    (
                        "results/unstructured/global_global_sp0.9_it5cubic/layer_weights.png",
                        "Global magnitude, 5 cubic steps to 90%: each layer's remaining weights and its sparsity",
                    ),
                ),
                problems=(
                    Problem(
                        unstructured(
                            "--method", "global", "--sparsity", "0.9", "--iterative", "--schedule", "quadratic"
                        ),
                        "An unknown schedule.",
                    ),
                ),
            ),
            Lesson(
                "7",
                (unstructured("--method", "movement", "--sparsity", "0.9", "--iterative", "--num-iterations", "5"),),
                needs=("1",),
                figures=(
                    (
                        "results/unstructured/movement_layerwise_sp0.9_it5cubic/layer_weights.png",
                        "Movement, 5 steps to 90%: each layer's remaining weights and its sparsity",
                    ),
                ),
            ),
            Lesson(
                "8",
                (structured("--method", "l1", "--sparsity", "0.3"),),
                needs=("1",),
                problems=(
                    Problem(
                        structured("--method", "l1", "--sparsity", "0.3", "--pruning-ratio", "0.3"),
                        "Two targets at once: `--sparsity` (FLOPs) and `--pruning-ratio` (channels).",
                    ),
                    Problem(structured("--method", "l7", "--sparsity", "0.3"), "An unknown importance."),
                ),
            ),
        )
        + _structured_days()
        + _advanced_days()
    )


def _structured_days() -> tuple[Lesson, ...]:
    on_macs50 = ("1", "9")  # these days read day 9's pruned model
    return (
        Lesson("9", (structured("--method", "l2", "--target-macs-reduction", "0.5"),), needs=("1",)),
        Lesson("10", (structured("--method", "taylor", "--target-macs-reduction", "0.5"),), needs=("1",)),
        Lesson(
            "11",
            (
                LessonRun(
                    "prune_structured",
                    (
                        "--checkpoint",
                        BASELINE,
                        "--method",
                        "bn_scale",
                        "--target-macs-reduction",
                        "0.5",
                        "--iterative-steps",
                        "3",
                        "--set",
                        "structured.bn_scale.epochs=5",
                        "finetune.kd.alpha=0.7",
                        # three rounds each take a third of the target: 16-channel steps cannot land the
                        # first round's 33.3% within 1 pt on this model (29.1% or 34.5%); 8-channel steps can
                        "structured.round_to=8",
                    ),
                    TINY_STRUCTURED + ("structured.bn_scale.epochs=1",),
                ),
            ),
            needs=("1",),
        ),
        Lesson(
            "12",
            (
                structured("--config", "cfgs/structured_resnet18_goal.yaml"),
                structured("--method", "l1", "--sparsity", "0.5", "--granularity", "kernel"),
            ),
            needs=("1",),
        ),
        Lesson("13", (LessonRun("export_onnx", ("--checkpoint", STRUCTURED_MACS50, "--verify")),), needs=on_macs50),
        Lesson(
            "14",
            (
                LessonRun(
                    "profile",
                    (
                        "--baseline",
                        BASELINE,
                        "--pruned",
                        STRUCTURED_MACS50,
                        "--measure-latency",
                        "--batch-sizes",
                        "1,64",
                        "--backend",
                        "both",
                    ),
                ),
            ),
            needs=on_macs50,
            figures=(("results/profile/quickstart/latency_vs_macs.png", "Latency reduction against MACs reduction"),),
            volatile=PROFILE_VOLATILE,
        ),
        # the pipeline's 40% (the README's 50% is often out of reach of a tiny model timed on a busy machine),
        # within 10 points instead of 5: a shared machine's timing spread
        Lesson(
            "14b",
            (
                LessonRun(
                    "prune_structured",
                    (
                        "--checkpoint",
                        BASELINE,
                        "--target-latency-reduction",
                        "0.4",
                        "--set",
                        "structured.latency.backend=onnxruntime",
                        "structured.latency.batch_size=64",
                    ),
                    TINY + ("structured.latency.tolerance=0.3", "structured.latency.rounds=21"),
                ),
            ),
            needs=("1",),
            volatile=(r"latency attempt", r"measured", r"latency reduction", r"latency table", r"Goal"),
        ),
        Lesson(
            "14c",
            (
                LessonRun("quantize", ("--checkpoint", STRUCTURED_MACS50)),
                LessonRun("eval", ("--checkpoint", "results/structured/l2_macs0.5/export/model.int8.onnx")),
            ),
            needs=on_macs50,
        ),
    )


def _advanced_days() -> tuple[Lesson, ...]:
    return (
        Lesson(
            "15",
            (unstructured("--method", "nm", "--nm", "2:4"),),
            needs=("1",),
            figures=(
                (
                    "results/unstructured/nm2of4_layerwise_sp0.5/layer_weights.png",
                    "2:4 at 50%: each layer's remaining weights and its sparsity (conv1 stays dense)",
                ),
            ),
        ),
        Lesson(
            "16",
            (LessonRun("sensitivity", ("--checkpoint", BASELINE, "--target-sparsity", "0.8")),),
            needs=("1",),
            figures=(
                (
                    "results/sensitivity/resnet20_l1/sensitivity.png",
                    "Top-1 against each layer's sparsity, layer by layer",
                ),
            ),
        ),
        Lesson(
            "17",
            (unstructured("--method", "l1", "--sparsity-file", "results/sensitivity/resnet20_l1/layer_sparsity.yaml"),),
            needs=("1", "16"),
        ),
        Lesson(
            "18",
            (
                unstructured("--method", "lamp", "--sparsity", "0.9", "--save-compressed"),
                LessonRun(
                    "eval", ("--checkpoint", "results/unstructured/lamp_global_sp0.9/pruned_model_compressed.pth")
                ),
            ),
            needs=("1",),
        ),
        Lesson(
            "18b",
            (
                LessonRun(
                    "prune_at_init",
                    (
                        "--config",
                        "cfgs/at_init_quickstart.yaml",
                        "--expid",
                        "resnet20_grid",
                        "--pruner-list",
                        "rand,mag,snip,grasp,synflow",
                        "--compression-list",
                        "0.5,1",
                    ),
                    TINY + ("pai.post_epochs=1", "pai.prune_epochs=10"),
                ),
                LessonRun("at_init_report", ("results/prune_at_init/resnet20_grid",), ()),
            ),
            figures=(
                (
                    "results/prune_at_init/resnet20_grid/accuracy_vs_compression.png",
                    "Top-1 against compression, one curve per pruner",
                ),
            ),
            volatile=(r"^\| \w+ \| [\d.]+ \| none",),
        ),  # the AMP table's seconds and MiB
        # the lab torch.loads a whole module: day 9's pickled pruned model stands in for the lab's MobileNetV2
        Lesson(
            "19b",
            (LessonRun("eval", ("--checkpoint", STRUCTURED_MACS50, "--grader", "mobilenet-lab")),),
            needs=("1", "9"),
            problems=(
                Problem(
                    LessonRun("eval", ("--checkpoint", BASELINE, "--grader", "mobilenet-lab")),
                    "A training checkpoint (a dict of weights): the lab loads a whole module.",
                ),
            ),
        ),
        Lesson(
            "19",
            (
                LessonRun(
                    "pipeline",
                    ("--config", "cfgs/quickstart.yaml"),
                    TINY_STRUCTURED
                    + ("pipeline.latency_target_reduction=0", "pipeline.int8_latency_target_reduction=0"),
                ),
            ),
            figures=(
                (
                    "results/pipeline/quickstart/pareto.png",
                    "The report's Pareto plot: test top-1 against MACs (non-zero for unstructured runs), per run",
                ),
                (
                    "results/pipeline/quickstart/channels.png",
                    "The structured model's fraction of channels kept, per layer",
                ),
            ),
            volatile=PROFILE_VOLATILE + (r"% of time",),
        ),
        Lesson(
            "20",
            (LessonRun("sweep", ("--sweep", "cfgs/sweeps/quickstart_unstructured.yaml", "--workers", "2")),),
            needs=("1",),
            volatile=(r"^Pareto frontier",),
        ),  # its members follow the near-chance accuracies
        Lesson(
            "21",
            (
                LessonRun(
                    "report",
                    ("--runs", "results/train", "results/unstructured", "results/structured", "results/sensitivity"),
                    (),
                ),
            ),
            needs=("1", "5", "9", "16"),
        ),
        Lesson("22", (LessonRun("benchmark", ("--list",), ()),)),
    )


LESSONS = {lesson.day: lesson for lesson in _lessons()}
