"""The training wing (PyTorch): datasets, the model, training, distillation, export, evaluation."""
