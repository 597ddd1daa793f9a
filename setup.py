"""Builds coe's native module with CMake for `pip install --no-build-isolation .`.

The module (coe._coe), libcoe_base.so and the modules libcoe_opencv.so, libcoe_images.so, libcoe_onednn.so and
libcoe_remote.so go into
the package directory; the module finds the others beside itself ($ORIGIN).
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.join(ROOT, "build-python")  # beside the other build trees (ignored by git)
        os.makedirs(build, exist_ok=True)
        args = ["-DCMAKE_BUILD_TYPE=Release", "-DCOE_BUILD_TESTS=OFF", "-DCOE_BUILD_BENCH=OFF",
                "-DPython_EXECUTABLE=" + sys.executable]
        if shutil.which("ccache"):
            args.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
            os.environ.setdefault("CCACHE_BASEDIR", ROOT)
        subprocess.check_call(["cmake", "-S", ROOT, "-B", build, *args])
        subprocess.check_call(["cmake", "--build", build, "--target", "_coe", "coe_opencv", "coe_images", "coe_onednn", "coe_remote", "-j", str(os.cpu_count() or 2)])
        out = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        os.makedirs(out, exist_ok=True)
        for f in glob.glob(os.path.join(build, "python", "coe", "_coe*.so")) + \
                glob.glob(os.path.join(build, "libcoe_base.so*")) + [os.path.join(build, m) for m in (
                    "libcoe_opencv.so", "libcoe_images.so", "libcoe_onednn.so", "libcoe_remote.so")]:
            shutil.copy2(f, out, follow_symlinks=True)


setup(ext_modules=[Extension("coe._coe", sources=[])], cmdclass={"build_ext": CMakeBuild})
