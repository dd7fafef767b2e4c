"""One registry type behind every name users pick (igfiqa.registry), and the list_* functions."""

from __future__ import annotations

import pytest

import igfiqa
from igfiqa.errors import ConfigError
from igfiqa.registry import Registry, exact


def test_names_aliases_spelling_and_order() -> None:
    reg: Registry[int] = Registry("colour")
    reg.add("Red", 1, aliases=("crimson",))
    reg.add("green_blue", 2)

    @reg.register("blue", aliases=("navy", "azure"))
    def blue() -> int:
        return 3

    assert reg.names() == ["red", "green-blue", "blue"] == list(reg)  # registration order
    assert reg.aliases() == {"crimson": "red", "navy": "blue", "azure": "blue"}
    assert reg.lookup(" RED ") == 1 and reg.lookup("Crimson") == 1
    assert reg.lookup("GREEN-blue") == reg.lookup("green_blue") == 2
    assert reg.lookup("navy") is blue and blue() == 3  # the decorator returns the function
    assert reg.canonical("AZURE") == "blue"
    # a read-only Mapping of the canonical names
    assert "navy" in reg and "purple" not in reg and 3 not in reg  # type: ignore[comparison-overlap]
    assert reg.get("purple") is None and reg.get("purple", 0) == 0 and reg["crimson"] == 1
    assert len(reg) == 3 and dict(reg) == {"red": 1, "green-blue": 2, "blue": blue}
    with pytest.raises(KeyError):
        reg["purple"]


def test_unknown_names_list_the_known_ones_and_suggest_the_closest() -> None:
    reg: Registry[int] = Registry("colour", also=("auto",))
    reg.add("red", 1, aliases=("crimson",))
    reg.add("blue", 2)
    with pytest.raises(ConfigError) as error:
        reg.lookup("bleu")
    assert str(error.value) == (
        "unknown colour 'bleu' (did you mean 'blue'?): choose one of red (crimson), blue or auto"
    )
    with pytest.raises(ConfigError, match=r"did you mean 'crimson'\?"):
        reg.canonical("crimsn")  # aliases are suggested too
    with pytest.raises(ConfigError) as error:
        reg.lookup("zzzzzz")
    assert "did you mean" not in str(error.value)  # nothing close: no guess
    assert reg.suggestion("zzzzzz") is None and reg.suggestion("BLUEE") == "blue"


def test_duplicates_and_empty_names_are_refused() -> None:
    reg: Registry[int] = Registry("colour")
    reg.add("red", 1, aliases=("crimson",))
    for name, aliases in [
        ("red", ()),
        ("RED", ()),  # the same name once spelt alike
        ("crimson", ()),  # a name that is an alias
        ("scarlet", ("red",)),  # an alias that is a name
        ("scarlet", ("crimson",)),  # an alias taken
        ("scarlet", ("x", "x")),
        ("scarlet", ("scarlet",)),
        ("", ()),
    ]:
        with pytest.raises(ValueError):
            reg.add(name, 2, aliases=aliases)
    assert reg.names() == ["red"] and reg.aliases() == {"crimson": "red"}  # nothing half-added


def test_exact_spelling_and_copies_are_independent() -> None:
    reg: Registry[int] = Registry("code", normalise=exact)
    reg.add("A1", 1)
    assert "A1" in reg and "a1" not in reg
    twin = reg.copy()
    twin.add("B2", 2)
    assert reg.names() == ["A1"] and twin.names() == ["A1", "B2"] and twin.what == "code"


def test_every_kind_of_name_is_one_registry() -> None:
    from igfiqa.data.benchmarks import BENCHMARK_READERS
    from igfiqa.data.datasets import TRAINING_FORMATS
    from igfiqa.detection import DETECTORS
    from igfiqa.evaluation.quality import QUALITY_METHODS
    from igfiqa.inference.kinds import KINDS
    from igfiqa.models import MODELS

    registries = [MODELS, KINDS, QUALITY_METHODS, BENCHMARK_READERS, DETECTORS, TRAINING_FORMATS]
    assert all(isinstance(r, Registry) for r in registries)
    assert len({r.what for r in registries}) == len(registries)


def test_list_functions_at_the_top_level() -> None:
    assert igfiqa.list_models() == [
        "iresnet18",
        "iresnet34",
        "iresnet50",
        "iresnet100",
        "iresnet200",
    ]
    kinds = igfiqa.list_model_kinds()
    assert kinds[:3] == ["igfiqa", "crfiqa", "magface"] and kinds[-2:] == ["onnx", "torchscript"]
    assert len(kinds) == len(set(kinds)) >= 12
    assert igfiqa.list_quality_methods() == [
        "csv",
        "embedding-norm",
        "ground-truth",
        "model",
        "random",
        "serfiq",
    ]  # "callable" is for Python functions, not a name one types
    assert igfiqa.list_benchmark_kinds() == ["bin", "folder", "ijbb", "ijbc", "synthetic", "xqlfw"]
    assert igfiqa.list_detectors() == ["mtcnn"]
    assert igfiqa.list_training_formats() == ["recordio", "folder", "list", "synthetic"]
    for listing in (igfiqa.list_models, igfiqa.list_benchmark_kinds, igfiqa.list_detectors):
        first = listing()
        first.append("mutated")
        assert "mutated" not in listing()  # each call gives a fresh list


def test_every_lookup_answers_with_the_registry_error(tmp_path) -> None:
    from igfiqa.data.benchmarks import open_benchmark
    from igfiqa.detection import load_detector
    from igfiqa.inference.kinds import get_kind

    cases = [
        (lambda: igfiqa.create_model("r05"), "unknown model 'r05' (did you mean 'r50'?)"),
        (lambda: get_kind("arcfac"), "unknown model kind 'arcfac' (did you mean 'arcface'?)"),
        (
            lambda: open_benchmark("xqlf", tmp_path),
            "unknown benchmark kind 'xqlf' (did you mean 'xqlfw'?)",
        ),
        (lambda: load_detector("mtcn"), "unknown face detector 'mtcn' (did you mean 'mtcnn'?)"),
        (
            lambda: igfiqa.open_training_dataset("synthetic:", format="synth"),
            "unknown training data format 'synth' (did you mean 'synthetic'?)",
        ),
    ]
    for call, start in cases:
        with pytest.raises(ConfigError) as error:
            call()
        assert str(error.value).startswith(start), str(error.value)
        assert ": choose one of " in str(error.value)


def test_old_spellings_still_resolve(tmp_path) -> None:
    from igfiqa.data.benchmarks import BENCHMARK_READERS
    from igfiqa.evaluation.quality import parse_quality_spec
    from igfiqa.inference.kinds import get_kind
    from igfiqa.models import canonical_model_name

    assert canonical_model_name("IResNet50") == canonical_model_name(" r50") == "iresnet50"
    assert get_kind("DiffIQA_R").name == "diffiqa-r"
    assert BENCHMARK_READERS.lookup("IJB-C").kind == "ijbc"
    assert parse_quality_spec("oracle").kind == "ground-truth"
    assert parse_quality_spec("magface-norm").kind == "embedding-norm"
    with pytest.raises(ConfigError, match=r"neither one of .*; did you mean 'random'\?"):
        parse_quality_spec("randon:3")
    with pytest.raises(ConfigError, match=r"did you mean 'crfiqa'\?"):
        parse_quality_spec(f"crfiq:{tmp_path / 'missing.pth'}")
    with pytest.raises(ConfigError) as error:
        parse_quality_spec(str(tmp_path / "nothing.pth"))
    assert "did you mean" not in str(error.value)  # a file name is not a misspelt method
