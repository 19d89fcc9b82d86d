"""DCASE2022 Task 2: six sections per machine type, 10 s clips; same method."""

from configs import dcase2023


def get_config():
  config = dcase2023.get_config()
  config.dataset = "dcase2022"
  config.data.roots = ("data/dcase2022/dev_data", "data/dcase2022/eval_data")
  return config
