"""Training loops: the solver wires a model, data and an optimizer together."""
from cs_vit.solvers.classification_solver_vit import ClassificationSolverViT, TrainingDivergedError

__all__ = ["ClassificationSolverViT", "TrainingDivergedError"]
