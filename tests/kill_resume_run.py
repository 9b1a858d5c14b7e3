"""A tiny training run in its own process, which can SIGKILL itself at a chosen iteration.

    python -m tests.kill_resume_run RUN_DIR [--kill-at ITERATION] [--resume]

Used by test_robustness_kill_resume.py: the kill lands exactly where the test asks,
in the middle of an epoch, with nothing flushed or cleaned up.
"""
import argparse
import os
import signal

from tests.robustness_helpers import tiny_digits, tiny_solver

EPOCHS = 3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at", type=int, help="global iteration at which to SIGKILL")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    solver = tiny_solver(tiny_digits(), num_epochs=EPOCHS, checkpoint_dir=args.run_dir,
                         resume=args.resume)
    train_step = solver._train_step

    def train_step_or_die(*batch):
        if solver.step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return train_step(*batch)

    solver._train_step = train_step_or_die
    solver.train("cpu")


if __name__ == "__main__":
    main()
