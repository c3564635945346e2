"""``import destatic`` stays light: no Prefect, librosa, moviepy, matplotlib or scipy.signal."""

from __future__ import annotations

import subprocess
import sys


def test_the_method_records_and_the_settings_load_no_numpy():
    """The settings and the command line build the method's option record without the DSP core."""
    code = (
        "import sys, destatic.dsp.methods, destatic.dsp.choices, destatic.settings\n"
        "destatic.settings.SuppressionSettings(reduction_db=10).options()\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy')))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""


def test_import_destatic_does_not_import_heavy_packages():
    code = (
        "import sys, destatic, destatic.dsp\n"
        "heavy = [m for m in ('prefect', 'librosa', 'moviepy', 'matplotlib', 'numba', 'scipy.signal', 'scipy.ndimage') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
    assert "denoise" in dir(__import__("destatic"))


def test_the_report_module_loads_its_plotting_and_video_packages_only_when_drawing():
    code = (
        "import sys, destatic.steps.report, destatic.steps.listening, destatic.media.preview\n"
        "print(','.join(m for m in ('librosa', 'moviepy', 'matplotlib', 'PIL') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
