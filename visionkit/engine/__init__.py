"""Training: the loop, distributed training, resumption (RNG states, what a resume may change),
mixed precision, optimizers, signals, logs and curves, R-CNN's SVM stage."""
