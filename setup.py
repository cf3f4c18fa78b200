from setuptools import find_packages, setup

setup(
    name="openrlhf-video",
    version="0.1.0",
    description="Video GRPO for Qwen2.5-VL on OpenRLHF, with the Temporal-R1 dual reward, "
    "variance-aware data selection and lmms-eval tasks",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["openrlhf_video*", "reward_plugins*", "lmms_tasks*"]),
    package_data={"lmms_tasks": ["**/*.yaml", "**/*_yaml", "**/utils.py"]},
    # Light on purpose: the rewards are pure Python and must install anywhere. torch is never
    # pinned here; it comes from the user's machine (GPU) or cpu_env/setup.sh (CPU tests).
    install_requires=["pyyaml", "tqdm", "numpy", "aiohttp", "matplotlib"],
    extras_require={
        "train": ["openrlhf[vllm]==0.11.2", "av<16", "decord", "qwen-vl-utils"],
        "eval": ["lmms-eval==0.7.3", "av<16", "decord"],
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "hypothesis", "requests", "psutil", "ruff==0.17.6"],  # pytest.ini runs -n 2
    },
    entry_points={"console_scripts": ["openrlhf-video=openrlhf_video.cli:main"]},
)
