"""Evidence for image debugging on the digits CNN: flip rates, and what the score means.

1. Flip rates. Every image the shipped CNN gets wrong (test and train
   splits) is debugged through the circuit of the class it wrongly predicts
   (built from the correctly classified images), against its true class. The
   top group (most margin over the true class along the circuit's edges,
   among the active groups of the ranked layer) is masked (zeroed), and the
   prediction is read again; the same is done with random groups of as many
   neurons of the same layer. The rates say how often the prediction
   returns to the true class ("back") and how often it leaves the wrong class
   ("change"). Several circuit configurations are run, all fixed here in
   advance, so the spread of the rates is visible.
2. What the log-barrier score means. For the circuit of every class (built
   on the training split), the groups' scores on the test images: how often
   a group is active on its own class's images and on the other classes',
   at thresholds 0.4, 0.6 and 0.8, for the whole image and for the best
   crop; how many decisions change when eps goes from 1e-8 to 1e-3; how
   often a member neuron is completely silent.
3. Polysemantic groups. Two groups of the top layer of two different
   classes' circuits are merged into one; on images of the first class the
   merged group's score, value ratio and coverage are compared with the
   first group's own.

Results are printed whichever way they come out.

Run: python -m benchmarks.debug_digits [--draws 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from captum_groups import NeuronGroup, ablate, build_circuit, debug_image
from captum_groups._model.capture import LayerCapture, record
from captum_groups.circuits import expression_score
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.discovery import crop_and_resize, crop_boxes

CONFIGS = [  # layers, tau, k, n_groups, scales, ranked layer, ranking
    (["relu2", "relu3"], 6, 20, 3, (1.0, 0.5), "relu3", "contrast"),
    (["relu2", "relu3"], 6, 20, 3, (1.0, 0.5, 0.25), "relu3", "contrast"),
    (["relu2", "relu3"], 8, 30, None, (1.0, 0.5), "relu3", "contrast"),
    (["relu2", "relu3"], 6, 20, 3, (1.0, 0.5), "relu3", "flow"),
    (["relu2", "relu3"], 6, 20, 3, (1.0, 0.5), None, "contrast"),
    (["relu3"], 6, 20, 3, (1.0, 0.5), "relu3", "contrast"),
]
WIDTH = {"relu1": 16, "relu2": 32, "relu3": 64}


def misclassified(model):
    cases = []
    for split in ("test", "train"):
        x, y = load_digits(split)
        with torch.no_grad():
            predicted = model(x).argmax(1)
        for i in (predicted != y).nonzero()[:, 0].tolist():
            cases.append((f"{split} {i}", x[i], int(y[i]), int(predicted[i])))
    return cases


def flip_rates(model, cases, correct, config, draws, generator):
    layers, tau, k, n_groups, scales, ranked, key = config
    circuits, rows = {}, []
    for name, image, true, wrong in cases:
        if wrong not in circuits:
            circuits[wrong] = build_circuit(
                model, layers, wrong, correct, tau=tau, k=k, n_groups=n_groups, scales=scales,
                n_steps=8, random_state=0, progress=False,
            )  # fmt: skip
        debug = debug_image(model, circuits[wrong], image, versus=true, n_steps=8)
        top = debug.top(1, by=key, layer=ranked) or debug.top(
            1, by=key, layer=ranked, active_only=False
        )
        group = top[0].group
        with torch.no_grad(), ablate(model, group):
            after = int(model(image[None]).argmax())
        random_after = []
        for _ in range(draws):
            neurons = torch.randperm(WIDTH[group.layer], generator=generator)[: len(group)]
            with torch.no_grad(), ablate(model, NeuronGroup(group.layer, neurons)):
                random_after.append(int(model(image[None]).argmax()))
        random_after = np.array(random_after)
        rows.append(
            (name, true, wrong, top[0].node, len(group), top[0].active, after,
             float((random_after == true).mean()), float((random_after != wrong).mean()))
        )  # fmt: skip
    return rows


def report_flips(model, draws):
    cases = misclassified(model)
    images, labels = load_digits("all")
    with torch.no_grad():
        correct = images[model(images).argmax(1) == labels]
    test_cases = sum(name.startswith("test") for name, *_ in cases)
    print(
        f"misclassified images: {len(cases)} ({test_cases} test, {len(cases) - test_cases} train)"
    )
    print(f"{'circuit layers':16s} tau  k  groups scales          ranked by      "
          f"top: back change | random: back change | top group sizes")  # fmt: skip
    for number, config in enumerate(CONFIGS):
        rows = flip_rates(model, cases, correct, config, draws, torch.Generator().manual_seed(0))
        layers, tau, k, n_groups, scales, ranked, key = config
        back = np.mean([r[6] == r[1] for r in rows])
        change = np.mean([r[6] != r[2] for r in rows])
        print(
            f"{'+'.join(layers):16s} {tau:3d} {k:3d} {n_groups!s:6s} {scales!s:15s} "
            f"{key + ' in ' + (ranked or 'all'):14s} {back:9.2f} {change:6.2f} | "
            f"{np.mean([r[7] for r in rows]):12.2f} {np.mean([r[8] for r in rows]):6.2f} | "
            f"{[r[4] for r in rows]}"
        )
        if number == 0:
            details = rows
    print("\nfirst configuration, image by image:")
    for name, true, wrong, node, size, active, after, r_back, r_change in details:
        print(
            f"  {name:10s} true {true} predicted {wrong}: mask {node} ({size} neurons, "
            f"{'active' if active else 'inactive'}) -> {after}; random groups give the true "
            f"class {r_back:.0%}, leave {wrong} {r_change:.0%}"
        )


def crop_scores(model, circuit, images, boxes, eps):
    """Per node: (N, crops) scores, and (N, crops, members) activations."""
    crops = crop_and_resize(images, boxes)
    captures = {layer: LayerCapture(model.get_submodule(layer)) for layer in circuit.layers}
    record(model, crops, list(captures.values()))
    result = {}
    for node, group in circuit.nodes.items():
        members = group.neuron_activations(captures[group.layer].output[0])
        members = members.view(len(images), len(boxes), -1)
        typical = torch.tensor(circuit.typical_activations[node])
        result[node] = (expression_score(members, typical, eps), members)
    return result


def report_scores(model):
    (x_train, _), (x_test, y_test) = load_digits("train"), load_digits("test")
    scales = (1.0, 0.5)
    boxes = crop_boxes(8, 8, scales)
    per_eps = {eps: [] for eps in (1e-8, 1e-6, 1e-3)}
    silent, sizes, aucs = [], [], []
    circuits = {}
    for digit in range(10):
        circuit = build_circuit(
            model, ["relu2", "relu3"], digit, x_train, tau=6, k=20, n_groups=3, scales=scales,
            n_steps=8, random_state=0, progress=False,
        )  # fmt: skip
        circuits[digit] = circuit
        for eps in per_eps:
            for node, (scores, members) in crop_scores(model, circuit, x_test, boxes, eps).items():
                per_eps[eps].append((digit, scores))
                if eps == 1e-6:
                    sizes.append(len(circuit.nodes[node]))
                    silent.append(float((members[:, 0] <= 0).any(1).float().mean()))
                    own = (y_test == digit).numpy()
                    aucs.append(roc_auc_score(own, scores[:, 0].numpy()))
    print(f"\n{len(per_eps[1e-6])} groups of 10 class circuits (sizes {min(sizes)}-{max(sizes)} "
          f"neurons); test images: fraction on which a group is active")  # fmt: skip
    print(f"{'eps':>6s} {'scores of':12s} {'threshold':>9s} {'own class':>9s} {'others':>7s}")
    decisions = {}
    for eps, rows in per_eps.items():
        for which in ("whole image", "best crop"):
            for threshold in (0.4, 0.6, 0.8):
                own, other, flags = [], [], []
                for digit, scores in rows:
                    value = scores[:, 0] if which == "whole image" else scores.max(1).values
                    active = value >= threshold
                    own.append(float(active[y_test == digit].float().mean()))
                    other.append(float(active[y_test != digit].float().mean()))
                    flags.append(active)
                decisions[(eps, which, threshold)] = torch.cat(flags)
                print(f"{eps:6.0e} {which:12s} {threshold:9.1f} {np.mean(own):9.2f} "
                      f"{np.mean(other):7.2f}")  # fmt: skip
    changed = max(
        float((decisions[(1e-8, w, t)] != decisions[(1e-3, w, t)]).float().mean())
        for w in ("whole image", "best crop")
        for t in (0.4, 0.6, 0.8)
    )
    print(f"decisions that change between eps 1e-8 and 1e-3: at most {changed:.2%}")
    print(f"(image, group) pairs with a silent member neuron: {np.mean(silent):.1%}")
    print(f"AUC of the whole-image score for the own class: mean {np.mean(aucs):.2f}, "
          f"range {min(aucs):.2f}-{max(aucs):.2f}")  # fmt: skip
    return circuits


def report_polysemantic(model, circuits):
    _, (x_test, y_test) = load_digits("train"), load_digits("test")
    boxes = crop_boxes(8, 8, (1.0,))
    rows = []
    for first, second in [(0, 1), (3, 7), (4, 9), (6, 2), (8, 5)]:
        a_node = circuits[first].node_ids("relu3")[0]
        b_node = circuits[second].node_ids("relu3")[0]
        a, b = circuits[first].nodes[a_node], circuits[second].nodes[b_node]
        shared = set(a.indices) & set(b.indices)
        extra = [i for i in b.indices if i not in shared]
        if not extra:
            continue
        merged = NeuronGroup("relu3", [*a.indices, *extra])
        typical_b = dict(zip(b.indices, circuits[second].typical_activations[b_node], strict=True))
        typical = torch.tensor(
            [*circuits[first].typical_activations[a_node], *[typical_b[i] for i in extra]]
        )
        images = x_test[y_test == first]
        capture = LayerCapture(model.relu3)
        record(model, crop_and_resize(images, boxes), [capture])
        members = merged.neuron_activations(capture.output[0])
        alone = expression_score(members[:, : len(a)], typical[: len(a)])
        together = expression_score(members, typical)
        ratio = members.sum(1) / typical.sum()
        coverage = (members >= 0.6 * typical).float().mean(1)
        rows.append((first, second, len(a), len(extra), alone, together, ratio, coverage))
    print("\npolysemantic groups (a relu3 group of one class's circuit merged with another's):")
    for first, second, n_a, n_b, alone, together, ratio, coverage in rows:
        print(
            f"  {first}+{second} ({n_a}+{n_b} neurons) on {first}s: score alone "
            f"{alone.median():.2f}, merged {together.median():.2f}; merged value ratio "
            f"{ratio.median():.2f}, coverage {coverage.median():.2f} (medians)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200, help="random groups per image")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    model = digits_cnn()
    report_flips(model, args.draws)
    circuits = report_scores(model)
    report_polysemantic(model, circuits)


if __name__ == "__main__":
    main()
