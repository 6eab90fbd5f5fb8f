"""Video inference: top-10 video instances and per-frame semantic labels, on hand-built logits, and equal to
resizing all frames at once (upstream's order of operations)."""

import torch
import torch.nn.functional as F

from mask2former_rankseg.modeling.meta_arch.postprocess import semantic_inference
from mask2former_rankseg.modeling.meta_arch.video_postprocess import (
    resize_frame_masks,
    video_instance_inference,
    video_semantic_inference,
)


def test_top_instances_by_hand():
    # 3 queries, 4 classes + no object; probabilities chosen so the best pairs are known
    probs = torch.tensor([[0.50, 0.10, 0.05, 0.05, 0.30],
                          [0.02, 0.70, 0.06, 0.12, 0.10],
                          [0.01, 0.01, 0.01, 0.01, 0.96]])
    mask_pred = torch.full((3, 2, 4, 4), -5.0)  # [Q, T, h, w] on the decoder grid
    mask_pred[1, 0, :2, :2] = 5.0  # query 1: top-left in frame 0, nothing in frame 1
    mask_pred[0, :, 2:, :] = 5.0  # query 0: bottom half in both frames
    out = video_instance_inference(probs.log(), mask_pred, padded_size=(8, 8), image_size=(8, 8),
                                   output_size=(8, 8), topk=3)
    assert out["image_size"] == (8, 8)
    assert out["pred_labels"] == [1, 0, 3]  # (q1, c1) 0.70, (q0, c0) 0.50, (q1, c3) 0.12; not (q0, c1) 0.10
    torch.testing.assert_close(torch.tensor(out["pred_scores"]), torch.tensor([0.70, 0.50, 0.12]))
    first, second = out["pred_masks"][0], out["pred_masks"][1]
    assert first.dtype == torch.bool and first.shape == (2, 8, 8) and first.device.type == "cpu"
    assert first[0, :4, :4].all() and first[0].sum() == 16 and not first[1].any()
    assert second[:, 4:].all() and not second[:, :4].any()
    assert torch.equal(out["pred_masks"][2], first)  # the same query, another class
    assert len(video_instance_inference(probs.log(), mask_pred, (8, 8), (8, 8), (8, 8))["pred_scores"]) == 10


def test_padding_is_cropped_before_resizing_to_the_video_size():
    mask_pred = torch.full((1, 1, 4, 4), -5.0)
    mask_pred[0, 0, :, :3] = 5.0  # the left 3/4 of the padded input = the whole unpadded image (12 of 16 px)
    out = video_instance_inference(torch.tensor([[3.0, 0.0]]), mask_pred, padded_size=(16, 16),
                                   image_size=(16, 12), output_size=(32, 24), topk=1)
    assert out["pred_masks"][0].shape == (1, 32, 24)
    assert out["pred_masks"][0][:, 2:-2, :-2].all()  # inside, away from the bilinear border of the mask


def test_semantic_labels_by_hand():
    mask_cls = torch.tensor([[4.0, -4.0, -4.0, -4.0], [-4.0, -4.0, 4.0, -4.0]])  # query 0 -> class 0, 1 -> class 2
    mask_pred = torch.full((2, 2, 4, 4), -6.0)
    mask_pred[0, :, :, :2] = 6.0  # query 0 on the left in both frames
    mask_pred[1, 0, :, 2:] = 6.0  # query 1 on the right in frame 0 only
    labels = video_semantic_inference(mask_cls, mask_pred, (4, 4), (4, 4), (4, 4))
    assert labels.dtype == torch.int64 and labels.shape == (2, 4, 4)
    assert (labels[0, :, :2] == 0).all() and (labels[0, :, 2:] == 2).all()
    assert (labels[1, :, :2] == 0).all()


def test_frame_by_frame_equals_all_frames_at_once():
    g = torch.Generator().manual_seed(0)
    mask_cls, mask_pred = torch.randn(6, 5, generator=g), torch.randn(6, 3, 5, 7, generator=g) * 4
    padded, image, output = (20, 28), (17, 25), (34, 50)
    # upstream: interpolate all frames to the padded size, crop, interpolate to the output size
    whole = F.interpolate(mask_pred, size=padded, mode="bilinear", align_corners=False)[..., :17, :25]
    whole = F.interpolate(whole, size=output, mode="bilinear", align_corners=False)
    torch.testing.assert_close(resize_frame_masks(mask_pred, padded, image, output), whole)
    expected = semantic_inference(mask_cls, whole).argmax(0)  # [K, T, H, W] -> [T, H, W]
    assert torch.equal(video_semantic_inference(mask_cls, mask_pred, padded, image, output), expected)
    instances = video_instance_inference(mask_cls, mask_pred, padded, image, output, topk=4)
    queries = F.softmax(mask_cls, -1)[:, :-1].flatten().topk(4).indices // 4
    assert torch.equal(torch.stack(instances["pred_masks"]), whole[queries] > 0)
