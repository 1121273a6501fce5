"""Training logs in the exact line formats of the public GCD codebases (test data only).

Each message is the format string of the named public file filled with made-up numbers;
the prefix is loguru's default file format (``{time} | {level: <8} | {name}:{function}:{line}
- {message}``), which ``logger.add(os.path.join(log_dir, 'log.txt'))`` writes.
"""

from __future__ import annotations

LOGURU = "2024-03-05 14:02:{s:02d}.532 | INFO     | __main__:train:{line} - "


def loguru(messages: list[str]) -> str:
    return "\n".join(LOGURU.format(s=i % 60, line=100 + i) + m for i, m in enumerate(messages))


# CVMI-Lab/SimGCD train.py (args.logger.info calls in __main__ and train(), pstr built from
# cls_loss / cluster_loss / sup_con_loss / contrastive_loss with a trailing space each) and
# util/cluster_and_log_utils.py log_accs_from_preds ('Epoch {T}, {log_name}: All .. | Old ..
# | New ..' with log_name = save_name + '_' + eval func); run with --eval_funcs v2 v2b.
SIMGCD_MESSAGES = [
    "Using evaluation function v2 to print results",
    "model build",
    "Epoch: [0][0/46]\t loss 7.21934\t cls_loss: 4.6174 cluster_loss: 8.3042 "
    "sup_con_loss: 5.7190 contrastive_loss: 6.1298 ",
    "Epoch: [0][10/46]\t loss 6.50012\t cls_loss: 3.9001 cluster_loss: 7.9120 "
    "sup_con_loss: 5.2001 contrastive_loss: 5.8870 ",
    "Train Epoch: 0 Avg Loss: 6.8123 ",
    "Testing on unlabelled examples in the training data...",
    "Epoch 0, Train ACC Unlabelled_v2: All 0.3120 | Old 0.4010 | New 0.2671",
    "Epoch 0, Train ACC Unlabelled_v2b: All 0.2950 | Old 0.3877 | New 0.2480",
    "Train Accuracies: All 0.3120 | Old 0.4010 | New 0.2671",
    "model saved to /exp/simgcd/log/cub_(05.03.2024_|_11.532)/checkpoints/model.pt.",
    "Epoch: [1][0/46]\t loss 5.91000\t cls_loss: 3.1000 cluster_loss: 7.5000 "
    "sup_con_loss: 4.9000 contrastive_loss: 5.6000 ",
    "CUDA kernel launch took longer than expected",  # not a line of SimGCD: must be counted
    "Train Epoch: 1 Avg Loss: 5.7001 ",
    "Testing on unlabelled examples in the training data...",
    "Epoch 1, Train ACC Unlabelled_v2: All 0.4002 | Old 0.5120 | New 0.3440",
    "Epoch 1, Train ACC Unlabelled_v2b: All 0.3811 | Old 0.4990 | New 0.3222",
    "Train Accuracies: All 0.4002 | Old 0.5120 | New 0.3440",
    "model saved to /exp/simgcd/log/cub_(05.03.2024_|_11.532)/checkpoints/model.pt.",
]
SIMGCD_LOG = loguru(SIMGCD_MESSAGES)

# HaiyangZheng/EAGC methods/SimGCD.py: the reference phase ('Reference Epoch: [{}][{}/{}]\t
# Loss {:.5f}\t cls_loss: {:.4f}', 'Reference Epoch: {} Avg Loss: {:.4f}'), training steps
# without the total ('Epoch: [{}][{}/{}]\t{}' with pstr), '[Best ACC Updated] Epoch {epoch}:
# All={:.4f}, Old={:.4f}, New={:.4f}'; its 'Epoch T, NAME_v2' lines go to stdout, not here.
# methods/LegoGCD.py adds 'nll_loss: {:.4f} ' to pstr.
EAGC_MESSAGES = [
    "Using evaluation function v2 to print results",
    "num_labeled_classes 100",
    "num_unlabeled_classes 100",
    "Train dataset size: 5994",
    "Starting reference model training...",
    "Reference Epoch: [0][0/23]\t Loss 4.60512\t cls_loss: 4.6051",
    "Reference Epoch: 0 Avg Loss: 4.2100",
    "Reference model training completed!",
    "Epoch: [0][0/46]\tcls_loss: 4.6174 cluster_loss: 8.3042 sup_con_loss: 5.7190 "
    "contrastive_loss: 6.1298 nll_loss: 0.9310 ",
    "Train Epoch: 0 Avg Loss: 6.8123 ",
    "Testing on unlabelled examples in the training data...",
    "Train Accuracies: All 0.3120 | Old 0.4010 | New 0.2671",
    "Epoch: [1][0/46]\tcls_loss: 3.1000 cluster_loss: 7.5000 sup_con_loss: 4.9000 "
    "contrastive_loss: 5.6000 nll_loss: 0.8000 ",
    "Train Epoch: 1 Avg Loss: 5.7001 ",
    "Testing on unlabelled examples in the training data...",
    "Train Accuracies: All 0.4002 | Old 0.5120 | New 0.3440",
    "Model saved to: /exp/eagc/best/SimGCD_cub_best_seed0.pth",
    "[Best ACC Updated] Epoch 1: All=0.4002, Old=0.5120, New=0.3440",
]
EAGC_LOG = loguru(EAGC_MESSAGES)

# sgvaze/generalized-category-discovery methods/contrastive_training/contrastive_training.py
# prints to stdout (a captured slurm .out file): 'Train Epoch: {} Avg Loss: {:.4f} | Seen
# Class Acc: {:.4f} ', 'Train Accuracies: ..', 'Test Accuracies: ..', 'model saved to {}.',
# 'projection head saved to {}.', 'Best Train Accuracies: ..'; project_utils/general_utils.py
# prints 'Experiment saved to: {}', the runner name list and the argparse Namespace.
GCD_STDOUT = "\n".join(
    [
        "Experiment saved to: /exp/metric_learn_gcd/log/(05.03.2024_|_11.532)",
        "['metric_learn_gcd']",
        "Namespace(batch_size=128, dataset_name='cub', eval_funcs=['v1', 'v2'])",
        "Using evaluation function v1 to print results",
        "",
        "Train Epoch: 0 Avg Loss: 5.4321 | Seen Class Acc: 0.2500 ",
        "Testing on unlabelled examples in the training data...",
        "Testing on disjoint test set...",
        "Train Accuracies: All 0.3000 | Old 0.3500 | New 0.2750",
        "Test Accuracies: All 0.2800 | Old 0.3300 | New 0.2500",
        "model saved to /exp/metric_learn_gcd/log/x/checkpoints/model.pt.",
        "projection head saved to /exp/metric_learn_gcd/log/x/checkpoints/model_proj_head.pt.",
        "Best ACC on old Classes on disjoint test set: 0.3300...",
        "Best Train Accuracies: All 0.3000 | Old 0.3500 | New 0.2750",
    ]
)

# the same messages under Python logging's common formats
LOGGING_LINES = "\n".join(
    [
        "2024-03-05 14:02:11,532 - INFO - Train Epoch: 3 Avg Loss: 4.0000 ",
        "2024-03-05 14:02:12,532 - simgcd - INFO - Train Accuracies: All 0.5000 | Old 0.6000 "
        "| New 0.4000",
        "INFO:root:Epoch 3, Train ACC Unlabelled_v2: All 0.5000 | Old 0.6000 | New 0.4000",
    ]
)

# enguangW/GET s2_GET.py: test() calls log_accs_from_preds three times (image, text and the
# fused prediction) with the same save name, then train_dual logs one line per branch
GET_MESSAGES = [
    "Train Epoch: 0 Avg Loss: 7.1000 ",
    "Testing on unlabelled examples in the training data...",
    "Epoch 0, Train ACC Unlabelled_v2: All 0.5000 | Old 0.6000 | New 0.4500",
    "Epoch 0, Train ACC Unlabelled_v2: All 0.4000 | Old 0.5000 | New 0.3500",
    "Epoch 0, Train ACC Unlabelled_v2: All 0.5500 | Old 0.6500 | New 0.5000",
    "Train Accuracies(img): All 0.5000 | Old 0.6000 | New 0.4500",
    "Train Accuracies(text): All 0.4000 | Old 0.5000 | New 0.3500",
    "Train Accuracies(sum): All 0.5500 | Old 0.6500 | New 0.5000",
    "full model saved to /exp/get/checkpoints/model.pt.",
]

# Cliffia123/LegoGCD train.py: args.logger.info('Epoch: [{}][{}/{}]\t loss {:.5f}\t {}
# Unlabeled condidate {} Unlabeled pred Old {} Unabeled true {} Unlabeled true_to_old {}
# Unlabeled true_to_novel {} Unabeled wrong {} Wrong old {} Wrong novel {} Wrong novel_to_old {}
# Wrong novel_to_novel {}') with pstr ending in 'nll_loss: {:.4f} ' (so two spaces follow it);
# the counts are .item() of integer sums. Here every count is {v}, the batch {b}.
LEGOGCD_FREE_TEXT_NAMES = [
    "Unlabeled condidate",
    "Unlabeled pred Old",
    "Unabeled true",
    "Unlabeled true_to_old",
    "Unlabeled true_to_novel",
    "Unabeled wrong",
    "Wrong old",
    "Wrong novel",
    "Wrong novel_to_old",
    "Wrong novel_to_novel",
]
LEGOGCD_STEP = (
    "Epoch: [0][{b}/1000]\t loss 7.21934\t cls_loss: 4.6174 cluster_loss: 8.3042 "
    "sup_con_loss: 5.7190 contrastive_loss: 5.2962 nll_loss: 0.0000  "
    + " ".join(f"{name} {{v}}" for name in LEGOGCD_FREE_TEXT_NAMES)
)
