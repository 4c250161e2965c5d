Feature: Storage
  As a PACS administrator
  I want every image a modality sends to be kept safely and findable
  So that nothing acknowledged is ever lost and nothing half-sent is ever kept

  The storage add-in ships with every server. It answers each C-STORE only after the object is
  on disk and in the index; what it refuses gets the status the DICOM standard names (PS3.4
  B.2.3, PS3.7 Annex C). The modality is played by pynetdicom, or by a raw peer that sends what
  no correct implementation would. Every scenario gets a new server.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario: A modality stores a study
    When the modality "CT_ROOM_1" stores a study of 2 series of 3 images with pynetdicom
    Then every store succeeds
    And the server holds 6 stored and indexed images from "CT_ROOM_1"
    And the storage check reports that index and files agree

  @fixture.pacsref.server
  Scenario Outline: An image sent twice is handled as the duplicates option says (<policy>)
    Given the storage option "duplicates" is "<policy>"
    When the modality "CT_ROOM_1" stores a study of 1 series of 1 images with pynetdicom
    And the modality "CT_ROOM_1" sends the same image again
    Then the second store gets status <status>
    And the server holds 1 stored and indexed images from "CT_ROOM_1"

    Examples:
      | policy     | status |
      | keep-first | 0x0000 |
      | overwrite  | 0x0000 |
      | refuse     | 0x0111 |

  @fixture.pacsref.server
  Scenario: A corrected Patient ID moves the study and leaves no patient without studies
    A modality that sent a study under a wrong Patient ID sends more of it under the right
    one. The study belongs to the corrected patient from then on (the latest object's patient
    wins), and the patient it had, left without studies, is removed in the same store: a
    patient query would otherwise still answer it.

    When the modality "CT_ROOM_1" stores a study of 1 series of 2 images with pynetdicom
    And the modality "CT_ROOM_1" sends 2 more images of that study with Patient ID "PID-CORRECTED"
    Then every store succeeds
    And the index holds one patient, "PID-CORRECTED", with the study
    And the server holds 4 stored and indexed images from "CT_ROOM_1"
    And the storage check reports that index and files agree

  @fixture.pacsref.server
  Scenario Outline: An image whose SOP Instance UID is not a UID is refused (<why>)
    When a raw peer stores an image with SOP Instance UID "<uid>"
    Then the store gets status 0x0117
    And the server holds 0 stored and indexed images from "RAWPEER"
    And nothing was written in the server directory or beside it, except its logs and index

    Examples:
      | why                        | uid                                                                      |
      | a path                     | ../../1.2.3                                                              |
      | longer than 64 characters  | 1.2.826.0.1.3680043.9.7.12345678901234567890123456789012345678901234567 |

  @fixture.pacsref.server
  Scenario: A modality that sends its next request before the answer to the last is cut off
    The association allows one operation at a time (asynchronous operations window 1/1,
    PS3.7 D.3.3.3). A peer that does not wait would otherwise have its requests queued, and
    their images spooled, without end.
    When a raw peer sends an image and, before its answer, a C-ECHO
    Then the server aborts that association
    And the server log says "more operations invoked than the asynchronous operations window of 1 allows"
    And the server holds 0 stored and indexed images from "RAWPEER"
    And the server's temporary directory is empty

  @fixture.pacsref.server
  Scenario: A transfer aborted half-way leaves nothing behind
    When a raw peer sends half of an image and then aborts the association
    Then the server holds 0 stored and indexed images from "RAWPEER"
    And the server's temporary directory is empty

  @fixture.pacsref.server
  Scenario: A full disk refuses the store and keeps the association usable
    The full disk is simulated: the storage option "simulate_full_disk" makes every write fail
    as a full file system does (ENOSPC).

    Given the storage option "simulate_full_disk" is true
    When the modality "CT_ROOM_1" stores a study of 1 series of 2 images with pynetdicom
    Then every store gets status 0xA700
    And the server holds 0 stored and indexed images from "CT_ROOM_1"

  @fixture.pacsref.server
  Scenario: A disk below its free-space reserve refuses stores before it is full
    The storage option "minimum_free_space_mib" (256 by default) keeps room on the data
    directory's file system for the index, the logs and the system: while less is free, every
    store gets 0xA700 and the log says why. Here the reserve is a terabyte above what is free.

    Given the storage option "minimum_free_space_mib" is a terabyte more than the disk has free
    When the modality "CT_ROOM_1" stores a study of 1 series of 2 images with pynetdicom
    Then every store gets status 0xA700
    And the server log says "(minimum_free_space_mib = "
    And the server holds 0 stored and indexed images from "CT_ROOM_1"

  @fixture.pacsref.server
  Scenario: A spool file that cannot be written refuses that store only
    The DIMSE layer spools each data set to the temporary directory before the add-in sees it.
    If that fails (a full disk: ENOSPC; here the directory is moved away, which fails the same
    way without needing root), the store gets 0xA700, the partial file is deleted and the
    association goes on.

    When the modality "CT_ROOM_1" stores 3 images on one association with pynetdicom, the server's temporary directory gone during the second
    Then the stores get statuses 0x0000, 0xA700, 0x0000
    And the refused store's error comment says "spool write failed: No such file or directory"
    And the association was still open after the last store
    And the server holds 2 stored and indexed images from "CT_ROOM_1"
    And the server's temporary directory is empty

  @fixture.pacsref.server
  Scenario: After a kill -9 and a restart, index and files agree
    When the modality "CT_ROOM_1" stores a study of 1 series of 3 images with pynetdicom
    And the server is killed with SIGKILL and started again
    Then the storage check reports that index and files agree
    And the server holds 3 stored and indexed images from "CT_ROOM_1"
    And the modality "CT_ROOM_1" can store a study of 1 series of 1 images with pynetdicom

  @fixture.pacsref.server
  Scenario: A kill between putting a file in place and indexing it is repaired by the check
    A store puts the file in place before it commits the index row, so a crash in between
    leaves a file the index does not know, which the modality was never told is stored. The
    storage option "simulate_crash_after_rename" makes the server kill itself (SIGKILL) in
    exactly that moment; it is turned off again while the server is down.

    Given the storage option "simulate_crash_after_rename" is true
    When the modality "CT_ROOM_1" stores 1 image with pynetdicom and the association is cut before any answer
    Then the server process was killed by SIGKILL
    When the administrator runs "pacsref addins config PACSREF storage simulate_crash_after_rename=false"
    Then it succeeds, printing "saved; PACSREF is stopped: applies when it starts"
    When the server is started again
    And the administrator runs "pacsref server check PACSREF"
    Then it ends with exit status 1, printing exactly
      """
      storage: 0 indexed instance(s), 1 stored file(s)
      storage: file without index row: <the file of that image>
      storage: index and files DISAGREE
      """
    When the administrator runs "pacsref server check PACSREF --repair"
    Then it ends with exit status 0, printing exactly
      """
      storage: 0 indexed instance(s), 1 stored file(s)
      storage: repaired: re-indexed <the file of that image>
      storage: index and files agree
      """
    When the administrator runs "pacsref server check PACSREF"
    Then it ends with exit status 0, printing exactly
      """
      storage: 1 indexed instance(s), 1 stored file(s)
      storage: index and files agree
      """
    And the server holds 1 stored and indexed images from "CT_ROOM_1"
    When the modality "CT_ROOM_1" sends the same image again
    Then the store gets status 0x0000
    And the server holds 1 stored and indexed images from "CT_ROOM_1"
