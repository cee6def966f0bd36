from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Question(_message.Message):
    __slots__ = ("question_id", "text")
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    question_id: str
    text: str
    def __init__(self, question_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class CreateInterviewRequest(_message.Message):
    __slots__ = ("role", "questions", "candidate_ref", "consent")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REF_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    questions: _containers.RepeatedCompositeFieldContainer[Question]
    candidate_ref: str
    consent: Consent
    def __init__(self, role: _Optional[str] = ..., questions: _Optional[_Iterable[_Union[Question, _Mapping]]] = ..., candidate_ref: _Optional[str] = ..., consent: _Optional[_Union[Consent, _Mapping]] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("given_at", "notice_version")
    GIVEN_AT_FIELD_NUMBER: _ClassVar[int]
    NOTICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    given_at: str
    notice_version: str
    def __init__(self, given_at: _Optional[str] = ..., notice_version: _Optional[str] = ...) -> None: ...

class CreateInterviewResponse(_message.Message):
    __slots__ = ("interview_id",)
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    def __init__(self, interview_id: _Optional[str] = ...) -> None: ...

class UploadAnswerRequest(_message.Message):
    __slots__ = ("interview_id", "question_id", "data", "total_bytes")
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    question_id: str
    data: bytes
    total_bytes: int
    def __init__(self, interview_id: _Optional[str] = ..., question_id: _Optional[str] = ..., data: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class Codecs(_message.Message):
    __slots__ = ("video", "audio")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    video: str
    audio: str
    def __init__(self, video: _Optional[str] = ..., audio: _Optional[str] = ...) -> None: ...

class AnswerInfo(_message.Message):
    __slots__ = ("interview_id", "question_id", "size_bytes", "duration_s", "width", "height", "fps", "container", "codecs")
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CODECS_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    question_id: str
    size_bytes: int
    duration_s: float
    width: int
    height: int
    fps: float
    container: str
    codecs: Codecs
    def __init__(self, interview_id: _Optional[str] = ..., question_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., duration_s: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., container: _Optional[str] = ..., codecs: _Optional[_Union[Codecs, _Mapping]] = ...) -> None: ...

class CompleteInterviewRequest(_message.Message):
    __slots__ = ("interview_id",)
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    def __init__(self, interview_id: _Optional[str] = ...) -> None: ...

class CompleteInterviewResponse(_message.Message):
    __slots__ = ("interview_id", "status")
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    status: str
    def __init__(self, interview_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class GetScorecardRequest(_message.Message):
    __slots__ = ("interview_id",)
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    def __init__(self, interview_id: _Optional[str] = ...) -> None: ...

class GetScorecardResponse(_message.Message):
    __slots__ = ("status", "scorecard_json", "error")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORECARD_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: str
    scorecard_json: str
    error: Error
    def __init__(self, status: _Optional[str] = ..., scorecard_json: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListScorecardsRequest(_message.Message):
    __slots__ = ("status", "role", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: str
    role: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[str] = ..., role: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class InterviewSummary(_message.Message):
    __slots__ = ("interview_id", "role", "status", "answer_count", "created_at", "scored_at")
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCORED_AT_FIELD_NUMBER: _ClassVar[int]
    interview_id: str
    role: str
    status: str
    answer_count: int
    created_at: float
    scored_at: float
    def __init__(self, interview_id: _Optional[str] = ..., role: _Optional[str] = ..., status: _Optional[str] = ..., answer_count: _Optional[int] = ..., created_at: _Optional[float] = ..., scored_at: _Optional[float] = ...) -> None: ...

class ListScorecardsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[InterviewSummary]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[InterviewSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchScoreEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScoreEvent(_message.Message):
    __slots__ = ("type", "interview_id", "answer_id", "question_id", "model_version", "competencies", "created_at", "error", "insufficient_evidence")
    class CompetenciesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INTERVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPETENCIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INSUFFICIENT_EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    interview_id: str
    answer_id: str
    question_id: str
    model_version: str
    competencies: _containers.ScalarMap[str, float]
    created_at: float
    error: str
    insufficient_evidence: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[str] = ..., interview_id: _Optional[str] = ..., answer_id: _Optional[str] = ..., question_id: _Optional[str] = ..., model_version: _Optional[str] = ..., competencies: _Optional[_Mapping[str, float]] = ..., created_at: _Optional[float] = ..., error: _Optional[str] = ..., insufficient_evidence: _Optional[_Iterable[str]] = ...) -> None: ...

class EraseCandidateRequest(_message.Message):
    __slots__ = ("candidate_ref",)
    CANDIDATE_REF_FIELD_NUMBER: _ClassVar[int]
    candidate_ref: str
    def __init__(self, candidate_ref: _Optional[str] = ...) -> None: ...

class ErasureReceipt(_message.Message):
    __slots__ = ("erasure_id", "status", "requested_at", "completed_at", "interviews", "removed")
    class RemovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ERASURE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    INTERVIEWS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    erasure_id: str
    status: str
    requested_at: float
    completed_at: float
    interviews: int
    removed: _containers.ScalarMap[str, int]
    def __init__(self, erasure_id: _Optional[str] = ..., status: _Optional[str] = ..., requested_at: _Optional[float] = ..., completed_at: _Optional[float] = ..., interviews: _Optional[int] = ..., removed: _Optional[_Mapping[str, int]] = ...) -> None: ...
