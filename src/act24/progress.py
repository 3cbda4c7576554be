"""What a training run reports while it trains: a tqdm bar on a terminal; in a log file (a Snakemake job's),
a plain line every `log_every` steps and at each evaluation; optionally TensorBoard scalars."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .config import ConfigError


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{s:02d}s"


class TrainingLog:
    """One run's reporter; only the main process's is `enabled` to print (TensorBoard: only its gets a folder)."""

    def __init__(self, name: str, first_step: int, steps: int, tokens_per_step: int, log_every: int,
                 enabled: bool = True, tensorboard_dir: Path | None = None):
        self.name, self.steps, self.tokens_per_step, self.log_every = name, steps, tokens_per_step, log_every
        self.enabled = enabled
        # A bar redrawn with carriage returns is one unreadable line in a file: there, plain lines instead.
        self.bar = tqdm(total=steps, initial=first_step, desc=name, mininterval=2.0,
                        disable=not (enabled and sys.stderr.isatty()))
        self.window_start, self.window_steps = time.perf_counter(), 0
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(f"config key 'train.tensorboard': needs the tensorboard package ({exc}); "
                                  "pip install -e '.[tensorboard]'") from exc
            # purge_step: a resumed run drops the events written after its checkpoint
            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=first_step or None)

    def _print(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar.disable:
            print(text, flush=True)
        else:
            self.bar.write(text)  # above the bar

    def train_step(self, step: int, loss: float, lr: float, grad_norm: float) -> None:
        """After the optimizer step `step` (0-based): throughput over the steps since the last line."""
        self.window_steps += 1
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        done = step + 1
        if self.writer:
            for tag, value in (("train/loss", loss), ("train/lr", lr), ("train/grad_norm", grad_norm)):
                self.writer.add_scalar(tag, value, done)
        if done % self.log_every and done != self.steps:
            return
        now = time.perf_counter()
        tokens_per_s = self.window_steps * self.tokens_per_step / max(now - self.window_start, 1e-9)
        eta = (self.steps - done) * self.tokens_per_step / tokens_per_s
        self.window_start, self.window_steps = now, 0
        if self.writer:
            self.writer.add_scalar("train/tokens_per_s", tokens_per_s, done)
        if self.bar.disable:
            self._print(f"{self.name} step {done}/{self.steps} ({done / self.steps:.0%}): loss {loss:.4f}, "
                        f"lr {lr:.3g}, grad norm {grad_norm:.3g}, {tokens_per_s:,.0f} tokens/s, "
                        f"eta {_duration(eta)}")

    def validation(self, step: int, loss: float) -> None:
        self._print(f"{self.name} step {step}/{self.steps}: validation loss {loss:.4f}")
        if self.writer:
            self.writer.add_scalar("val/loss", loss, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer:
            self.writer.close()
