"""The summaries of torch's load errors that a refused checkpoint's message quotes: whole sentences only."""

from __future__ import annotations

from movielens_gnn.checkpoint import _first_line, _first_sentence, _unsupported_global, _weights_unpickler_reason

# torch 2.13's own texts, as `torch.load(..., weights_only=True)` raises them.
TRUNCATED = ("PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal "
             "miniz error. If you are seeing this error, there is a high likelihood that your checkpoint file is "
             "corrupted. This can happen if the checkpoint was not saved properly.")
CLASS_GLOBAL = ("Weights only load failed. This file can still be loaded, to do so you have two options, \x1b[1mdo "
                "those steps only if you trust the source of the checkpoint\x1b[0m. \n\t(1) In PyTorch 2.6, we "
                "changed the default value of the `weights_only` argument in `torch.load` from `False` to `True`. "
                "Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it can result in "
                "arbitrary code execution. Do it only if you got the file from a trusted source.\n\t(2) "
                "Alternatively, to load with `weights_only=True` please check the recommended steps in the following "
                "error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL __main__.Payload was not an "
                "allowed global by default. Please use `torch.serialization.add_safe_globals([__main__.Payload])` or "
                "the `torch.serialization.safe_globals([__main__.Payload])` context manager to allowlist this global "
                "if you trust this class/function.\n\nCheck the documentation of torch.load to learn more about "
                "types accepted by default with weights_only https://pytorch.org/docs/stable/generated/torch.load.html.")
BLOCKED_MODULE = ("Weights only load failed. In PyTorch 2.6, we changed the default.\n\n\nTrying to load unsupported "
                  "GLOBAL posix.system whose module posix is blocked.\n\nCheck the documentation of torch.load.")
OPERAND = ("Weights only load failed. In PyTorch 2.6, we changed the default.\nPlease file an issue with the "
           "following so that we can make `weights_only=True` compatible with your use case: WeightsUnpickler "
           "error: \n\nUnsupported operand 149\n\nCheck the documentation of torch.load.")


def test_a_truncated_checkpoint_is_summarised_by_its_first_sentence():
    assert _first_line(RuntimeError(TRUNCATED)) == (
        "PytorchStreamReader failed reading zip archive: failed finding central directory")
    assert _first_line(KeyError(101)) == "101"


def test_a_refused_global_is_named_without_torch_s_advice_to_allow_it():
    assert _unsupported_global(CLASS_GLOBAL) == (
        "Unsupported global: GLOBAL __main__.Payload was not an allowed global by default")
    assert _unsupported_global(BLOCKED_MODULE) == "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
    assert _unsupported_global(OPERAND) is None
    assert _weights_unpickler_reason(OPERAND) == "Unsupported operand 149"
    # torch 2.2 (the DGL environment's) puts it all on one line, and says "class".
    old_torch = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
                 "succeed, but it can result in arbitrary code execution.Do it only if you get the file from a trusted "
                 "source. WeightsUnpickler error: Unsupported class {}")
    assert _unsupported_global(old_torch.format("posix.system")) == "Unsupported class posix.system"
    assert _unsupported_global(old_torch.format("__main__.Payload")) == "Unsupported class __main__.Payload"
    assert _unsupported_global(old_torch.replace("class {}", "operand 149")) is None
    assert _weights_unpickler_reason(old_torch.replace("class {}", "operand 149")) == "Unsupported operand 149"


def test_first_sentence_cuts_long_text_at_a_word():
    assert _first_sentence("One two. Three.") == "One two"
    assert _first_sentence("version 2.6 is out") == "version 2.6 is out"  # a full stop inside a word is no end
    assert _first_sentence("use a file, e.g. x.ckpt. Then retry") == "use a file, e.g. x.ckpt"  # no capital after "e.g."
    assert _first_sentence("cannot open '/tmp/a. b'") == "cannot open '/tmp/a. b'"
    assert _first_sentence("...") == "..."  # never empty
    assert _first_sentence("aaaa bbbb cccc", limit=10) == "aaaa bbbb…"


def test_differences_leave_out_settings_a_side_does_not_have():
    from movielens_gnn.checkpoint import describe_differences, identity_differences

    differences = identity_differences({"split": "random", "test_fraction": 0.2}, {"split": "u1", "test_fraction": 0.2})
    assert differences == [("split", "random", "u1"), ("test_fraction", 0.2, None)]  # u1 has its own test part
    assert describe_differences(differences, "--data.") == ("--data.split 'random', --data.test_fraction 0.2",
                                                           "--data.split 'u1'")
    # Where the unset setting is the whole difference, it is shown (not an empty side).
    assert describe_differences([("implicit_threshold", None, 4.0)], "") == ("implicit_threshold unset",
                                                                          "implicit_threshold 4.0")
    assert describe_differences([("autoencoder_weight_decay", None, 0.01)], "--model.") == (
        "--model.autoencoder_weight_decay unset", "--model.autoencoder_weight_decay 0.01")
