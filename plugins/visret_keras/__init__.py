"""visret's Keras plugin: CNN feature extraction networks (Keras Applications, textbook CNNs, cut
trained models), CNN classifiers trained end to end (the ``cnn`` pipeline) and the ``dense`` head.

Nothing here imports TensorFlow until an extractor builds its model.
"""

from visret import hookimpl
from visret_keras.applications import APPLICATIONS
from visret_keras.custom import LeNet5, VGGSmall
from visret_keras.efficientnet_lite import LITE_NETWORKS
from visret_keras.dense_head import DenseHead
from visret_keras.saved_model import SavedModel
from visret_keras.squeezenet import SqueezeNet


@hookimpl
def register_commands(app):
    from visret_keras.commands import register

    register(app)


@hookimpl
def register_extractors(register):
    for extractor in (SqueezeNet, *LITE_NETWORKS, *APPLICATIONS, LeNet5, VGGSmall, SavedModel):
        register(extractor)


@hookimpl
def register_pipelines(register):
    from visret_keras.pipeline import CNNPipeline  # imported when pipelines are asked for, not by every command

    register(CNNPipeline)


@hookimpl
def register_classifiers(register):
    register(DenseHead)
