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


@dataclass(frozen=True)
class Run:
    script: str  # scripts.<script>
    argv: tuple[str, ...]
    tiny: tuple[str, ...] = TINY  # --set values appended by the generator


@dataclass(frozen=True)
class Problem:
    run: Run  # must fail with one error line, before any training (so it runs without `tiny`)
    why: str  # what the learner did wrong, in a sentence


@dataclass(frozen=True)
class Lesson:
    day: str
    runs: tuple[Run, ...]
    needs: tuple[str, ...] = ()  # days whose results this day reads, in order
    figures: tuple[tuple[str, str], ...] = ()  # (path in the workspace, caption)
    problems: tuple[Problem, ...] = ()

    @property
    def page(self) -> str:
        digits = "".join(c for c in self.day if c.isdigit())
        return f"day{int(digits):02d}{self.day[len(digits):]}.md"


def unstructured(*flags: str) -> Run:
    return Run("prune_unstructured", ("--checkpoint", BASELINE, *flags))


def structured(*flags: str) -> Run:
    return Run("prune_structured", ("--checkpoint", BASELINE, *flags), TINY_STRUCTURED)


def _lessons() -> tuple[Lesson, ...]:
    return (
        Lesson("1", (Run("train", ("--config", "cfgs/quickstart.yaml")),),
               problems=(Problem(Run("train", ("--config", "cfgs/quickstart.yml")), "A config path with a typo."),
                         Problem(Run("train", ("--config", "cfgs/quickstart.yaml", "--set", "train.optimiser=adam")),
                                 "A misspelt config key in `--set`."))),
        Lesson("2", (Run("eval", ("--checkpoint", BASELINE, "--measure-latency")),), needs=("1",),
               problems=(Problem(Run("eval", ("--checkpoint", "results/train/quickstart/best.pth")),
                                 "A checkpoint that is not there (the file is `best_model.pth`)."),)),
        Lesson("3", (unstructured("--method", "l1", "--sparsity", "0.5"),), needs=("1",),
               figures=(("results/unstructured/l1_layerwise_sp0.5/layer_weights.png",
                         "Each layer's weights before and after pruning"),),
               problems=(Problem(unstructured("--method", "l1", "--sparsity", "1.0"),
                                 "A sparsity of 1 would remove every weight."),
                         Problem(unstructured("--method", "l3", "--sparsity", "0.5"), "An unknown method."))),
        Lesson("4", (unstructured("--method", "global", "--sparsity", "0.8"),
                     unstructured("--method", "l1", "--sparsity", "0.8")), needs=("1",)),
        Lesson("5", (unstructured("--method", "lamp", "--sparsity", "0.9"),), needs=("1",)),
        Lesson("6", (unstructured("--method", "global", "--sparsity", "0.9", "--iterative", "--num-iterations", "5",
                                  "--schedule", "cubic"),), needs=("1",),
               problems=(Problem(unstructured("--method", "global", "--sparsity", "0.9", "--iterative",
                                              "--schedule", "quadratic"), "An unknown schedule."),)),
        Lesson("7", (unstructured("--method", "movement", "--sparsity", "0.9", "--iterative",
                                  "--num-iterations", "5"),), needs=("1",)),
        Lesson("8", (structured("--method", "l1", "--sparsity", "0.3"),), needs=("1",),
               problems=(Problem(structured("--method", "l1", "--sparsity", "0.3", "--pruning-ratio", "0.3"),
                                 "Two targets at once: `--sparsity` (FLOPs) and `--pruning-ratio` (channels)."),
                         Problem(structured("--method", "l7", "--sparsity", "0.3"), "An unknown importance."))),
    )


LESSONS = {lesson.day: lesson for lesson in _lessons()}
