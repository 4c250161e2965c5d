"""twistd plugin: ``twistd -n pacsref``. One lazy declaration, nothing else."""

from twisted.application.service import ServiceMaker

pacsref = ServiceMaker(
    "pacsref",
    "pacsref.server.tap",
    "A DICOM PACS server whose services are supplied by add-ins (pacsref).",
    "pacsref",
)
