Feature: Pause and resume
  As a PACS administrator
  I want to pause a server so that it takes no new associations while the open ones finish, and to resume it
  So that I can drain a server before maintenance without cutting off a modality in the middle of its work

  A paused server answers every new A-ASSOCIATE-RQ with A-ASSOCIATE-RJ (2, 3, 1): transient,
  from the service provider (presentation related function), temporary congestion (PS3.8 Table
  9-21), which tells a modality to try again later. Associations already open carry on: their
  requests are served and their releases confirmed. Resuming restores service at once. Until
  the administrative socket exists, the server pauses on SIGUSR1 and resumes on SIGUSR2; the
  steps send the signal and then wait until the change shows on the wire.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario: A paused server refuses new associations, serves and releases the open one, and resumes
    Given the modality "CT_ROOM_1" holds an association with the server
    When the administrator pauses the server
    And the modality "MR_ROOM_2" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the association is rejected as "temporary congestion" (2, 3, 1) within 1 second
    And the held association of "CT_ROOM_1" still answers 20 C-ECHOs
    When the modality "CT_ROOM_1" releases its association
    And the administrator resumes the server
    And the modality "MR_ROOM_2" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds

  @fixture.pacsref.server
  Scenario Outline: Pause and resume as <client> sees them
    Given the server is running
    When the administrator pauses the server
    And the modality "MR_ROOM_2" sends a C-ECHO to "PACSREF" with <client>
    Then the association is rejected as "temporary congestion" (2, 3, 1)
    When the administrator resumes the server
    And the modality "MR_ROOM_2" sends a C-ECHO to "PACSREF" with <client>
    Then the echo succeeds

    Examples: pynetdicom
      | client     |
      | pynetdicom |

    @dcmtk
    Examples: DCMTK
      | client        |
      | DCMTK echoscu |
