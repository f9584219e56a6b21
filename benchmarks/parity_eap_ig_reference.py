"""Edge scores of the tiny GPT against the reference EAP-IG code (hannamw/EAP-IG).

The reference (Hanna, Pezzelle and Belinkov's ``eap`` package) runs on TransformerLens
``HookedTransformer``s, which TransformerLens 4 removed; so it runs in a second Python
environment (``transformer-lens<3``), on a ``HookedTransformer`` given the shipped tiny
GPT's weights (logits equal to 1e-5, checked). Both score the same 100 induction prompts
against their corrupted forms, with the same metric (the next token's logit above the mean
logit at the copyable positions), by the reference's three methods:

- ``EAP``: the gradient at the clean run;
- ``EAP-IG-inputs`` with 5 steps: the embedding moved from corrupted to clean
  (ours: ``eap_scores(path="inputs", method="riemann_left")``);
- ``exact``: one patched run per edge.

The reference scores ``corrupted - clean`` changes of a loss (the negated metric) and exact
patching as ``m(patched) - m(clean)``; ours score the metric's drop, so ours equal the
reference's scores for EAP and EAP-IG and their negation for exact patching. Prints, per
method, the largest difference over the 110 edges and the Spearman correlation.

The activations paths differ by design: the reference's ``EAP-IG-activations`` moves a
whole layer's heads at once and gives every edge the gradients of every layer's runs; ours
(``path="activations"``) moves each node on its own and gives a node's edges the
gradients of its own runs. For those two the script prints each one's Spearman
correlation with exact patching.

Run (the reference environment once: ``python -m venv /tmp/eap-venv &&
/tmp/eap-venv/bin/pip install torch "transformer-lens<3" "numpy<2"``; the reference's
source: a checkout of github.com/hannamw/EAP-IG)::

    python -m benchmarks.parity_eap_ig_reference --reference-python /tmp/eap-venv/bin/python \
        --eap-src EAP-IG/src
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

STEPS = 5
METHODS = ("EAP", "EAP-IG-inputs", "exact")
"""Methods both compute the same way."""
ACTIVATIONS = "EAP-IG-activations"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True, help="python with transformer-lens<3")
    parser.add_argument("--eap-src", required=True, type=Path, help="EAP-IG's src folder")
    parser.add_argument("--prompts", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        inputs, ours = Path(folder) / "inputs.pt", _ours(args.prompts)
        saved = ("state", "clean", "corrupted", "copyable", "logits")
        torch.save({key: ours[key] for key in saved}, inputs)
        subprocess.run(
            [args.reference_python, __file__, "--reference", str(inputs), str(args.eap_src)],
            check=True,
        )
        reference = torch.load(Path(folder) / "reference.pt", weights_only=True)
    _compare(ours, reference)


def _ours(prompts: int) -> dict:
    from captum_groups.circuits.edge_scores import eap_scores, exact_scores, metric_of
    from captum_groups.circuits.stream import StreamGraph
    from captum_groups.induction import induction_prompts, tiny_gpt

    model = tiny_gpt()
    clean, corrupted, copyable = induction_prompts(prompts, random_state=7)
    graph = StreamGraph(model, clean)
    reference, metric = graph.reference(corrupted), metric_of("next_token", clean, copyable)
    scores = {
        "EAP": eap_scores(graph, clean, reference, metric, n_steps=1),
        "EAP-IG-inputs": eap_scores(
            graph, clean, reference, metric, STEPS, "riemann_left", path="inputs"
        ),  # fmt: skip
        "exact": exact_scores(graph, clean, reference, metric),
        ACTIVATIONS: eap_scores(graph, clean, reference, metric, STEPS, "riemann_right"),
    }
    named = {
        method: {_name(u, v): float(s) for (u, v), s in zip(graph.edges, found, strict=True)}
        for method, found in scores.items()
    }
    with torch.no_grad():
        logits = model(clean)
    return {"state": model.state_dict(), "clean": clean, "corrupted": corrupted,
            "copyable": copyable, "logits": logits, "scores": named}  # fmt: skip


def _name(sender: str, receiver: str) -> str:
    """Our edge as the reference names it: ``input->a0.h1<k>``, ``m1->logits``."""
    sender = "input" if sender == "embed" else sender
    if receiver == "target":
        return f"{sender}->logits"
    head, _, role = receiver.rpartition(".")
    return f"{sender}->{head}<{role}>" if role in ("q", "k", "v") else f"{sender}->{receiver}"


def _compare(ours: dict, reference: dict) -> None:
    from scipy.stats import spearmanr

    for method in METHODS:
        mine, theirs = ours["scores"][method], reference[method]
        assert set(mine) == set(theirs), set(mine) ^ set(theirs)
        sign = -1.0 if method == "exact" else 1.0
        pairs = [(mine[e], sign * theirs[e]) for e in sorted(mine)]
        largest = max(abs(a - b) for a, b in pairs)
        scale = max(abs(b) for _, b in pairs)
        rho = spearmanr(*zip(*pairs, strict=True)).statistic
        print(f"{method:14s} {len(pairs)} edges: largest difference {largest:.2e} "
              f"({largest / scale:.1e} of the largest score), Spearman {rho:.6f}")  # fmt: skip
    exact = [ours["scores"]["exact"][e] for e in sorted(ours["scores"]["exact"])]
    for who, scores in (("reference", reference), ("ours", ours["scores"])):
        rho = spearmanr([scores[ACTIVATIONS][e] for e in sorted(scores[ACTIVATIONS])],
                        exact).statistic  # fmt: skip
        print(f"{ACTIVATIONS} ({who}), {STEPS} steps: Spearman with exact patching {rho:.3f}")


def _reference(inputs: Path, source: Path) -> None:
    """In the reference's environment: its scores of every edge, by method."""
    sys.path.insert(0, str(source))
    import eap.attribute
    import eap.evaluate
    from eap.graph import Graph

    data = torch.load(inputs, weights_only=True)
    clean, corrupted, copyable = data["clean"], data["corrupted"], data["copyable"]
    model = _hooked_transformer(data["state"])
    with torch.no_grad():
        difference = (model(clean) - data["logits"]).abs().max().item()
    assert difference < 1e-4, f"the HookedTransformer's logits differ by {difference}"
    print(f"HookedTransformer against the tiny GPT: logits equal to {difference:.1e}")
    length = clean.shape[1]

    def tokenize(_model, tokens, *_args):  # token ids as they are: no tokenizer, no BOS
        return tokens, None, torch.full((len(tokens),), length), length

    eap.attribute.tokenize_plus = eap.evaluate.tokenize_plus = tokenize
    chosen = copyable[:, :-1].float()

    def per_example(logits, *_args):
        """Each example's share of our metric, times the number of examples: their mean is
        our metric (the mean over every chosen position of every example)."""
        right = logits[:, :-1].gather(-1, clean[:, 1:, None])[..., 0]
        above = (right - logits[:, :-1].mean(-1)) * chosen
        return above.sum(1) / chosen.sum() * len(clean)

    def loss(logits, *args):  # the reference attributes a loss: the negated metric, summed
        return -per_example(logits, *args).sum()

    loader = [(clean, corrupted, copyable)]
    found = {}
    zeros = torch.zeros
    # the reference makes its score matrices on "cuda"; here they go where the model is
    eap.attribute.torch.zeros = lambda *a, device=None, **k: zeros(*a, **k)
    try:
        for method in (*METHODS, ACTIVATIONS):
            graph = Graph.from_model(model)
            metric = per_example if method == "exact" else loss
            steps = STEPS if method.startswith("EAP-IG") else None
            eap.attribute.attribute(model, graph, loader, metric, method, ig_steps=steps,
                                    quiet=True)  # fmt: skip
            found[method] = {name: float(edge.score) for name, edge in graph.edges.items()}
    finally:
        eap.attribute.torch.zeros = zeros
    torch.save(found, inputs.parent / "reference.pt")


def _hooked_transformer(state: dict):
    """A ``HookedTransformer`` with the tiny GPT's weights (nn.TransformerEncoderLayer,
    pre-norm, ReLU MLP)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    width, vocab = state["embed.weight"].shape[1], state["embed.weight"].shape[0]
    layers = 1 + max(int(key.split(".")[2]) for key in state if key.startswith("blocks.layers"))
    heads = 4
    config = HookedTransformerConfig(
        n_layers=layers, d_model=width, n_heads=heads, d_head=width // heads,
        d_mlp=state["blocks.layers.0.linear1.weight"].shape[0], d_vocab=vocab,
        n_ctx=state["positions"].shape[0], act_fn="relu", normalization_type="LN",
        positional_embedding_type="standard", default_prepend_bos=False,
    )  # fmt: skip
    model = HookedTransformer(config)
    new = {
        "embed.W_E": state["embed.weight"], "pos_embed.W_pos": state["positions"],
        "ln_final.w": state["norm.weight"], "ln_final.b": state["norm.bias"],
        "unembed.W_U": state["unembed.weight"].T, "unembed.b_U": state["unembed.bias"],
    }  # fmt: skip
    for layer in range(layers):
        old, block = f"blocks.layers.{layer}.", f"blocks.{layer}."
        projection, bias = (
            state[old + "self_attn.in_proj_weight"],
            state[old + "self_attn.in_proj_bias"],
        )
        for index, name in enumerate("QKV"):
            weight = projection[index * width : (index + 1) * width]
            new[block + f"attn.W_{name}"] = weight.view(heads, width // heads, width).transpose(
                1, 2
            )
            new[block + f"attn.b_{name}"] = bias[index * width : (index + 1) * width].view(
                heads, -1
            )
        out = state[old + "self_attn.out_proj.weight"]
        new[block + "attn.W_O"] = out.T.reshape(heads, width // heads, width)
        new[block + "attn.b_O"] = state[old + "self_attn.out_proj.bias"]
        for norm, ours in (("ln1", "norm1"), ("ln2", "norm2")):
            new[block + f"{norm}.w"] = state[old + f"{ours}.weight"]
            new[block + f"{norm}.b"] = state[old + f"{ours}.bias"]
        new[block + "mlp.W_in"] = state[old + "linear1.weight"].T
        new[block + "mlp.b_in"] = state[old + "linear1.bias"]
        new[block + "mlp.W_out"] = state[old + "linear2.weight"].T
        new[block + "mlp.b_out"] = state[old + "linear2.bias"]
    missing = model.load_state_dict(new, strict=False).missing_keys
    assert all(k.endswith(("IGNORE", "mask")) for k in missing), missing
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    model.eval()
    return model


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--reference":
        _reference(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
