"""visret's CNN feature extraction networks: Keras Applications, textbook CNNs, cut trained models.

Nothing here imports TensorFlow until an extractor builds its model.
"""

from visret import hookimpl
from visret_keras.applications import APPLICATIONS
from visret_keras.custom import LeNet5, VGGSmall
from visret_keras.saved_model import SavedModel


@hookimpl
def register_commands(app):
    from visret_keras.commands import register

    register(app)


@hookimpl
def register_extractors(register):
    for extractor in (*APPLICATIONS, LeNet5, VGGSmall, SavedModel):
        register(extractor)
