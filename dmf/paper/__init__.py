"""The paper's tables as configs (conf/paper/): launch every row, collect them beside the published numbers."""
