"""The one place learning curves become pictures (PNG through matplotlib, Agg backend)."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(path, panels, title=None, hline=None):
    """panels: list of (xlabel, ylabel, {label: [(x, y), ...]}), one axis each, side by side.
    hline: (y, label) drawn on every panel (e.g. the no-action return)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (xlabel, ylabel, series) in zip(axes[0], panels):
        if hline is not None:
            ax.axhline(hline[0], color="grey", linestyle="--", label=hline[1])
        for label, pts in series.items():
            xs, ys = zip(*pts) if pts else ((), ())
            ax.plot(xs, ys, label=label, marker="." if len(xs) < 30 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
