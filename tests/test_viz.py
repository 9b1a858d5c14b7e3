import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.special import softmax
from matplotlib.text import Text

from cs_vit import viz
from cs_vit.viz.history import moving_average
from cs_vit.viz.patches import patch_mosaic

matplotlib.use("Agg")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def figure_texts(fig):
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def random_attention(num_layers, N, num_heads, T, seed=0):
    rng = np.random.default_rng(seed)
    return [softmax(rng.standard_normal((N, num_heads, T, T)), axis=-1).astype(np.float32)
            for _ in range(num_layers)]


def image_batch(N, C, size, seed=0):
    return np.random.default_rng(seed).standard_normal((N, C, size, size)).astype(np.float32)


def history(num_epochs, iterations_per_epoch=20, with_lr=True):
    rng = np.random.default_rng(0)
    n = num_epochs * iterations_per_epoch
    return {
        "loss_history": list(2.3 * np.exp(-np.arange(n) / n) + 0.1 * rng.random(n)),
        "lr_history": list(np.linspace(1e-3, 0.0, n)) if with_lr else [],
        "train_acc_history": list(np.linspace(0.3, 0.8, num_epochs)),
        "test_acc_history": list(np.linspace(0.25, 0.6, num_epochs)),
    }


@pytest.mark.task1
@pytest.mark.parametrize("channels", [1, 3])
def test_show_patches_returns_figure_and_writes_png(tmp_path, channels):
    images = image_batch(3, channels, 32)
    mean, std = [0.5] * channels, [0.25] * channels
    fig = viz.show_patches(images, 8, mean=mean, std=std, save_path=tmp_path / "p.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "p.png")
    assert "image 0: 4x4 patches of 8x8" in figure_texts(fig)


@pytest.mark.task1
def test_show_patches_shows_at_most_max_images_uint8_images():
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    fig = viz.show_patches(images, 4, max_images=2)
    assert [ax.get_title() for ax in fig.axes] == [
        "image 0: 4x4 patches of 4x4", "image 1: 4x4 patches of 4x4"]


@pytest.mark.task1
def test_patch_mosaic_lays_patches_out_in_reading_order_with_white_gaps():
    P, gap = 2, 1
    patch_index = np.arange(6, dtype=np.float64).reshape(2, 3) / 10
    image = np.kron(patch_index, np.ones((P, P)))[..., None]
    mosaic = patch_mosaic(image, P, gap)
    assert mosaic.shape == (2 * P + gap, 3 * P + 2 * gap, 1)
    step = P + gap
    for r in range(2):
        for c in range(3):
            np.testing.assert_array_equal(mosaic[r * step:r * step + P, c * step:c * step + P],
                                          patch_index[r, c])
    assert (mosaic[P:step] == 1.0).all() and (mosaic[:, P:step] == 1.0).all()


def test_show_patches_rejects_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="not divisible by patch_size 5"):
        viz.show_patches(image_batch(1, 3, 16), 5)


def test_show_patches_rejects_a_mean_for_the_wrong_number_of_channels():
    with pytest.raises(ValueError, match="3 values but the images have 1 channel"):
        viz.show_patches(image_batch(1, 1, 8), 4, mean=[0.5] * 3, std=[0.2] * 3)


def test_plot_history_has_loss_accuracy_and_lr_panels(tmp_path):
    fig = viz.plot_history(history(5), save_path=tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == [
        "training loss", "accuracy", "learning-rate schedule"]
    assert_png(tmp_path / "h.png")


def test_plot_history_works_with_one_epoch_and_an_empty_lr_list(tmp_path):
    fig = viz.plot_history(history(1, with_lr=False), save_path=tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "accuracy"]
    assert_png(tmp_path / "h.png")


def test_plot_history_names_the_best_test_accuracy_and_its_epoch():
    h = history(3)
    h["test_acc_history"] = [0.41, 0.672, 0.65]
    h["train_loss"], h["test_loss"] = [2.0, 1.5, 1.2], [2.1, 1.7, 1.6]
    fig = viz.plot_history(h)
    assert "best test: 67.2% (epoch 2)" in figure_texts(fig)


def test_plot_history_reads_accuracies_given_in_percent():
    h = history(2)
    h["train_acc_history"], h["test_acc_history"] = [40.0, 55.5], [38.0, 50.25]
    assert "best test: 50.2% (epoch 2)" in figure_texts(viz.plot_history(h))


def test_plot_history_reads_the_solvers_results_keys():
    results = {"loss_history": [2.0, 1.8, 1.7, 1.5], "lr_history": [1e-3] * 4,
               "train_loss": [1.9, 1.6], "test_loss": [1.8, 1.7],
               "train_acc@1": [0.3, 0.5], "test_acc@1": [0.35, 0.45],
               "best_test_acc": 0.45, "best_epoch": 2, "grad_norm_history": [1.0] * 4}
    fig = viz.plot_history(results)
    assert [ax.get_title() for ax in fig.axes][1] == "accuracy"
    assert "best test: 45.0% (epoch 2)" in figure_texts(fig)


def test_plot_history_of_a_validation_split_marks_the_test_accuracy_read_once():
    results = {"loss_history": [2.0, 1.8, 1.7, 1.5], "lr_history": [1e-3] * 4,
               "train_loss": [1.9, 1.6], "val_loss": [1.8, 1.7], "test_loss": [1.75],
               "train_acc@1": [0.3, 0.5], "val_acc@1": [0.4, 0.35], "test_acc@1": [0.38],
               "best_val_acc": 0.4, "best_epoch": 1, "best_test_acc": 0.38}
    texts = figure_texts(viz.plot_history(results))
    assert "best validation: 40.0% (epoch 1)" in texts and "test, read once: 38.0%" in texts
    assert "validation (epoch)" in texts and "test (epoch)" not in texts


def test_plot_history_rejects_an_empty_loss_history():
    with pytest.raises(ValueError, match="loss_history"):
        viz.plot_history({"loss_history": [], "test_acc_history": [0.5]})


def test_moving_average_averages_the_last_window_values():
    np.testing.assert_allclose(moving_average([1, 3, 5, 7], 2), [1, 2, 4, 6])


def test_confusion_matrix_counts_true_predicted_pairs():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    cm = viz.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype.kind == "i"


def test_confusion_matrix_rejects_labels_outside_the_classes():
    with pytest.raises(ValueError, match="3 classes"):
        viz.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_confusion_matrix_rejects_scores_instead_of_labels():
    with pytest.raises(ValueError, match="argmax"):
        viz.confusion_matrix(np.array([0, 1]), np.zeros((2, 3)), 3)


def test_plot_confusion_matrix_reports_overall_and_per_class_accuracy(tmp_path):
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    fig = viz.plot_confusion_matrix(y_true, y_pred, ["cat", "dog", "frog"],
                                    save_path=tmp_path / "c.png")
    ax = fig.axes[0]
    assert ax.get_title() == "overall accuracy 60.0% (3/5 images)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat (50%)", "dog (100%)", "frog (0%)"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.50", "0.50", "1.00", "1.00"]
    assert_png(tmp_path / "c.png")


def test_plot_confusion_matrix_writes_counts_when_not_normalised():
    y_true = np.array([0, 0, 0, 1])
    y_pred = np.array([0, 0, 1, 1])
    fig = viz.plot_confusion_matrix(y_true, y_pred, ["a", "b", "c"], normalize=False)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "2"]
    assert ax.get_yticklabels()[2].get_text() == "c (no images)"


def test_attention_rollout_of_identity_attention_is_identity():
    eye = np.broadcast_to(np.eye(5, dtype=np.float32), (2, 3, 5, 5))
    rollout = viz.attention_rollout([eye, eye, eye])
    np.testing.assert_allclose(rollout, np.broadcast_to(np.eye(5), (2, 5, 5)), atol=1e-6)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5])
def test_attention_rollout_rows_sum_to_one(head_fusion, discard_ratio):
    attn = random_attention(3, 2, 4, 7)
    rollout = viz.attention_rollout(attn, head_fusion=head_fusion, discard_ratio=discard_ratio)
    assert rollout.shape == (2, 7, 7)
    np.testing.assert_allclose(rollout.sum(axis=-1), 1.0, atol=1e-5)


def test_attention_rollout_of_one_layer_is_half_attention_plus_half_identity():
    attn = random_attention(1, 2, 3, 4, seed=1)
    rollout = viz.attention_rollout(attn)
    expected = 0.5 * attn[0].astype(np.float64).mean(axis=1) + 0.5 * np.eye(4)
    np.testing.assert_allclose(rollout, expected, atol=1e-6)


def test_attention_rollout_multiplies_later_layers_on_the_left():
    first, second = random_attention(2, 1, 2, 3, seed=2)
    single = [viz.attention_rollout([a]) for a in (first, second)]
    np.testing.assert_allclose(viz.attention_rollout([first, second]),
                               single[1] @ single[0], atol=1e-6)


def test_attention_rollout_keeps_float32():
    assert viz.attention_rollout(random_attention(2, 1, 2, 5)).dtype == np.float32


def test_attention_rollout_rejects_an_unknown_head_fusion():
    with pytest.raises(ValueError, match="head_fusion"):
        viz.attention_rollout(random_attention(1, 1, 1, 3), head_fusion="median")


def test_plot_attention_maps_shows_input_each_head_and_rollout_for_a_cls_token(tmp_path):
    attn = random_attention(2, 3, 4, 1 + 4 * 4)
    image = image_batch(3, 3, 16)[1]
    fig = viz.plot_attention_maps(image, attn, 4, index=1, mean=[0.5] * 3, std=[0.2] * 3,
                                  save_path=tmp_path / "a.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["input", "head 1", "head 2", "head 3", "head 4", "rollout, 2 layers"]
    assert fig.get_suptitle().startswith("CLS token's attention")
    assert "layer 2 of 2" in fig.get_suptitle()
    assert_png(tmp_path / "a.png")


def test_plot_attention_maps_without_cls_token_uses_mean_attention_and_says_so(tmp_path):
    attn = random_attention(3, 1, 2, 2 * 3)
    image = np.random.default_rng(0).integers(0, 256, (1, 8, 12), dtype=np.uint8)
    fig = viz.plot_attention_maps(image, attn, (2, 3), layer=0, save_path=tmp_path / "a.png")
    assert "no CLS token" in fig.get_suptitle()
    assert "layer 1 of 3" in fig.get_suptitle()
    assert_png(tmp_path / "a.png")


def test_plot_attention_maps_rejects_a_grid_with_more_patches_than_tokens():
    with pytest.raises(ValueError, match="grid_size 4x4 needs 16 patches"):
        viz.plot_attention_maps(image_batch(1, 3, 16)[0], random_attention(1, 1, 2, 10), 4)


def test_plot_attention_maps_rejects_a_layer_that_does_not_exist():
    with pytest.raises(ValueError, match="layer 2 does not exist"):
        viz.plot_attention_maps(image_batch(1, 3, 8)[0], random_attention(2, 1, 2, 5), 2, layer=2)


def test_position_similarity_drops_the_cls_row_and_compares_every_patch_pair():
    rng = np.random.default_rng(0)
    pos_embed = rng.standard_normal((1, 1 + 2 * 3, 8)).astype(np.float32)
    similarity = viz.position_similarity(pos_embed, (2, 3))
    assert similarity.shape == (2, 3, 2, 3)
    patches = pos_embed[0, 1:].astype(np.float64)
    unit = patches / np.linalg.norm(patches, axis=1, keepdims=True)
    np.testing.assert_allclose(similarity.reshape(6, 6), unit @ unit.T, atol=1e-12)
    np.testing.assert_allclose(similarity[1, 2, 1, 2], 1.0)


@pytest.mark.parametrize("shape, prefix", [((1, 17, 6), 1), ((16, 6), 0)])
def test_plot_position_similarity_writes_png(tmp_path, shape, prefix):
    pos_embed = np.random.default_rng(0).standard_normal(shape)
    fig = viz.plot_position_similarity(pos_embed, 4, num_prefix_tokens=prefix,
                                       save_path=tmp_path / "pos.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert_png(tmp_path / "pos.png")


def test_plot_position_similarity_rejects_a_wrong_number_of_tokens():
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        viz.plot_position_similarity(np.zeros((1, 16, 4)), 4)


def test_figures_are_not_kept_open_by_pyplot_and_show_in_a_notebook():
    import matplotlib.pyplot as plt

    fig = viz.plot_history(history(1))
    assert plt.get_fignums() == []
    assert fig._repr_png_()[:8] == PNG_SIGNATURE
