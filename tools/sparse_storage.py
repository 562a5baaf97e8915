"""Old import path of tools.modeling.sparse_storage, kept only for unpickling: compressed
checkpoints written before the layered layout name `tools.sparse_storage.unpack_tensor` as the
decoder of each packed tensor. New code imports tools.modeling.sparse_storage.
"""

from tools.modeling.sparse_storage import unpack_tensor  # noqa: F401
