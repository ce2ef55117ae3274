import pytest

from theorylab.core.config import ConfigError, make_config, parse_assignments
from theorylab.studies.icl.config import ICLConfig


def test_unknown_field_is_named_with_known_fields():
    with pytest.raises(ConfigError) as e:
        make_config(ICLConfig, {"alpah": 0.5})
    assert "alpah" in str(e.value) and "alpha" in str(e.value)


@pytest.mark.parametrize("field,value,range_text", [("alpha", 1.5, "(0, 1]"), ("kappa", -0.1, "[0, 1)"),
                                                    ("m", 1, "[2, 65536]"), ("lr", 0, "(0, 10000.0]")])
def test_out_of_range_names_field_and_range(field, value, range_text):
    with pytest.raises(ConfigError) as e:
        make_config(ICLConfig, {field: value})
    msg = str(e.value)
    assert f"'{field}'" in msg and range_text in msg and repr(value) in msg


def test_cross_field_constraints_name_the_field():
    with pytest.raises(ConfigError, match="d_X"):
        make_config(ICLConfig, {"M1": 10, "M2": 30, "d_X": 30})
    with pytest.raises(ConfigError, match="S1"):
        make_config(ICLConfig, {"ood_construction": "unit", "S1": 1.6})
    with pytest.raises(ConfigError, match="train_task_offsets"):
        make_config(ICLConfig, {"train_task_offsets": (0, 1)})


def test_configs_are_frozen():
    cfg = ICLConfig()
    with pytest.raises(Exception):
        cfg.alpha = 0.3


def test_hash_is_stable_and_group_key_ignores_ensemble_scalars():
    a, b = ICLConfig(seed=1), ICLConfig(seed=1)
    assert a.hash == b.hash and len(a.hash) == 64
    assert ICLConfig(seed=2).hash != a.hash
    assert ICLConfig(seed=2, lr=1.0, alpha=0.5).group_key() == a.group_key()
    assert ICLConfig(m=32).group_key() != a.group_key()  # shape field


def test_parse_assignments():
    got = parse_assignments(["alpha=0.6", "lr=1e-3", "train_task_offsets=[1,2]", "attend_query=true", "name=x"])
    assert got == {"alpha": 0.6, "lr": 1e-3, "train_task_offsets": [1, 2], "attend_query": True, "name": "x"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["alpha"])
