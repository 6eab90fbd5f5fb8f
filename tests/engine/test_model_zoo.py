"""The model zoo: the catalog (every entry's config ships, names and md5 prefixes), ``zoo://`` names through the
Checkpointer (download once, md5 check, the offline error), detectron2's model_zoo API, and a release ``.pth``
written the way detectron2's checkpointer writes one."""

import hashlib

import pytest
import torch
from helpers import REPO
from torch import nn

from mask2former_rankseg import model_zoo
from mask2former_rankseg.config import ConfigError, find_shipped_config
from mask2former_rankseg.engine import Checkpointer
from mask2former_rankseg.engine.checkpoint import CheckpointError, urls, zoo
from mask2former_rankseg.engine.checkpoint.zoo import ZOO, ZooEntry


def test_catalog_entries_name_shipped_configs_and_upstreams_files():
    assert len(ZOO) == 19 and model_zoo.list_models() == sorted(ZOO)
    for name, entry in ZOO.items():
        assert entry.name == name and entry.url.startswith("https://") and entry.metric
        if name.startswith("imagenet/"):
            assert entry.config is None
        else:
            assert find_shipped_config(entry.config) is not None, entry.config
            assert entry.config.split("/")[-1].removesuffix(".yaml") == name.split("/")[-1]
    # Mask2Former's baselines carry their md5 prefix in the file name; RankSeg's release files do not
    assert ZOO["ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640"].md5_prefix == "7e47bf"
    assert ZOO["ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg"].md5_prefix is None
    listed = (REPO / "MODEL_ZOO.md").read_text()
    assert all(f"`{name}`" in listed and entry.url in listed for name, entry in ZOO.items())


def test_api_gives_config_files_configs_and_urls():
    name = "ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg"
    assert model_zoo.get_config_file(name).name == "maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg.yaml"
    cfg = model_zoo.get_config(name, trained=True)
    assert f"zoo://{name}" == cfg.MODEL.WEIGHTS and cfg.MODEL.RANKSEG.FLAG and cfg.MODEL.RANKSEG.TOPK == 150
    assert f"zoo://{name}" != model_zoo.get_config(name).MODEL.WEIGHTS
    assert model_zoo.get_checkpoint_url(f"zoo://{name}").endswith("res640-rankseg.pth")
    with pytest.raises(KeyError, match="not in the model zoo"):
        model_zoo.get_config_file("ade20k/semantic/nope")
    with pytest.raises(ConfigError, match="ImageNet backbone"):
        model_zoo.get_config_file("imagenet/R-50")


class _Downloads:
    """Stands in for iopath's PathManager: 'downloads' a URL by copying a local file, once."""

    def __init__(self, source, fail=False):
        self.source, self.fail, self.calls = source, fail, []

    def get_local_path(self, url):
        self.calls.append(url)
        if self.fail:
            raise OSError("[Errno -3] Temporary failure in name resolution")
        return str(self.source)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2))


def _detectron2_checkpoint(path, model, iteration=7):
    """A file as detectron2's Checkpointer.save writes one: model, optimizer and scheduler state, iteration."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": {"base_lrs": [0.1], "last_epoch": iteration}, "iteration": iteration}, path)


def test_zoo_names_load_through_the_checkpointer_with_an_md5_check(tmp_path, monkeypatch):
    source = tmp_path / "release.pth"
    _detectron2_checkpoint(source, _model())
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    monkeypatch.setitem(ZOO, "test/good", ZooEntry("test/good", None, "https://example.org/a/good.pth", "-", md5[:6]))
    downloads = _Downloads(source)
    monkeypatch.setattr(urls, "_path_manager", lambda: downloads)
    model = _model()
    nn.init.zeros_(model[0].weight)
    Checkpointer(model).load("zoo://test/good", checkpointables=[])
    assert torch.equal(model[0].weight, torch.load(source)["model"]["0.weight"])
    assert downloads.calls == ["https://example.org/a/good.pth"]
    marker = tmp_path / f"release.pth.md5-{md5[:6]}"
    assert marker.is_file()  # checked once: later loads do not hash the file again
    assert zoo.check_md5_prefix(str(source), md5[:6])

    bad_md5 = "000000" if not md5.startswith("000000") else "ffffff"
    monkeypatch.setitem(ZOO, "test/bad", ZooEntry("test/bad", None, "https://example.org/a/bad.pth", "-", bad_md5))
    with pytest.raises(CheckpointError, match="corrupt.*removed"):
        Checkpointer(_model()).load("zoo://test/bad", checkpointables=[])
    assert not source.exists()  # the corrupt download is not left in the cache
    with pytest.raises(CheckpointError, match="not in the model zoo"):
        Checkpointer(_model()).load("zoo://test/unknown", checkpointables=[])


def test_offline_error_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urls, "_path_manager", lambda: _Downloads(None, fail=True))
    name = "ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg"
    with pytest.raises(CheckpointError) as error:
        Checkpointer(_model()).load(f"zoo://{name}", checkpointables=[])
    message = str(error.value)
    url = zoo.zoo_entry(name).url
    assert url in message and "Temporary failure" in message
    assert str(tmp_path / "cache" / "openseg-group/RankSeg/releases/download/v1.0.0" / url.split("/")[-1]) in message


def test_release_pth_with_counters_and_optimizer_state_loads_safely(tmp_path):
    """What release .pth files hold beyond tensors (iteration counters, optimizer and scheduler state in plain
    containers) loads with torch's weights-only unpickler; an arbitrary class is still refused."""
    path = tmp_path / "model_final.pth"
    trained = _model()
    _detectron2_checkpoint(path, trained, iteration=90000)
    model = _model()
    nn.init.zeros_(model[0].weight)
    Checkpointer(model).load(str(path), checkpointables=[])
    assert torch.equal(model[0].weight, trained[0].weight)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": trained.state_dict(), "note": _Arbitrary()}, unsafe)
    with pytest.raises(CheckpointError):
        Checkpointer(_model()).load(str(unsafe), checkpointables=[])


class _Arbitrary:
    pass


def test_get_builds_the_model_of_a_zoo_name_with_its_released_weights(tmp_path, monkeypatch):
    """model_zoo.get(name, trained=True): the entry's config, built, its checkpoint loaded through zoo://, in eval
    mode (a small synthetic entry stands in for the released ones, which are far too big to fetch in a test)."""
    config = "synthetic/maskformer2_R18_synthetic-rankseg.yaml"
    reference = model_zoo.get_config_file  # the real lookup, checked on the stand-in's config name
    monkeypatch.setitem(ZOO, "test/tiny", ZooEntry("test/tiny", config, "https://example.org/t/tiny.pth", "-"))
    assert reference("test/tiny").name == "maskformer2_R18_synthetic-rankseg.yaml"
    torch.manual_seed(1)
    released = model_zoo.get("test/tiny", trained=False, device="cpu")
    assert not released.training and released.ml_head is not None
    path = tmp_path / "tiny.pth"
    torch.save({"model": released.state_dict(), "iteration": 3000}, path)
    monkeypatch.setattr(urls, "_path_manager", lambda: _Downloads(path))
    torch.manual_seed(2)
    model = model_zoo.get("test/tiny", trained=True, device="cpu")
    assert not model.training
    for (name, a), b in zip(model.state_dict().items(), released.state_dict().values()):
        assert torch.equal(a, b), name
