// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SignerQuorum
/// @notice A t-of-n set of signers whose EIP-712 signatures carry the authority to extend a chain, change
/// the set, and remove a signer caught signing two conflicting blocks. At most 32 signers, 1 <= t <= n.
/// @dev The hot path (`_verifyQuorum`) reads no storage: the inheriting contract keeps a 160-bit commitment
/// to (t, signers) in a slot it reads anyway, and the caller sends the set's members that did not sign in
/// calldata. The full set is also stored here (ERC-7201 namespace), for views, set changes, equivocation
/// evidence and for naming exactly what is wrong when a proof is refused; it always hashes to the
/// commitment. Layouts and digests: docs/PROTOCOL.md §16; vectors: tests/vectors/quorum.json.
abstract contract SignerQuorum {
    // ───────────────────────────────────────────── types ─────────────────────────────────────────────

    /// @notice A signer set: members strictly ascending, and the number of them that must sign.
    struct SignerSet {
        address[] signers;
        uint8 threshold;
    }

    // ──────────────────────────────────────────── errors ─────────────────────────────────────────────

    /// @notice This deployment attests by quorum signatures; the single-attester call does not apply.
    error QuorumMode();
    /// @notice This deployment has a single attester; the quorum call does not apply.
    error SingleAttesterMode();
    /// @notice The signatures argument does not parse: its length does not fit its bitmap, n > 32, or the
    /// bitmap names a member beyond n.
    error MalformedSignatures(uint256 length);
    /// @notice The signatures argument names threshold `got`; the set's is `expected`.
    error WrongThreshold(uint256 expected, uint256 got);
    /// @notice The signatures argument accounts for `got` members; the set has `expected`.
    error WrongSignerCount(uint256 expected, uint256 got);
    /// @notice The member listed as not signing at `position` is `got`; the set has `expected` there.
    error NonSignerMismatch(uint256 position, address expected, address got);
    /// @notice Signature `index` recovers to `recovered`, which is not in the set: an outsider's key, a
    /// signature over another message or domain (another chain id or contract), or a corrupt signature (0).
    error InvalidSigner(uint256 index, address recovered);
    /// @notice Signature `index` is by a member, but not the member at its place: signatures must come in
    /// the set's (ascending) order.
    error SignersNotAscending(uint256 index);
    /// @notice Signature `index` is by `signer`, whose signature was already counted.
    error DuplicateSigner(uint256 index, address signer);
    /// @notice Signature `index` has s in the upper half of the curve order (the malleable twin).
    error MalleableSignature(uint256 index);
    /// @notice Only `got` members signed; the threshold is `threshold`.
    error TooFewSignatures(uint256 got, uint256 threshold);
    /// @notice A signer set must have between 1 and 32 members.
    error SignerCountOutOfRange(uint256 count);
    /// @notice A threshold must be between 1 and the number of signers.
    error ThresholdOutOfRange(uint256 threshold, uint256 count);
    /// @notice A signer set's members must be strictly ascending (and non-zero); `position` breaks it.
    error SignerSetNotAscending(uint256 position);
    /// @notice A signed set update must carry the current nonce `expected`.
    error WrongNonce(uint256 expected, uint256 got);
    /// @notice The owner has ended the bootstrap phase; the set changes only by signed update now.
    error BootstrapOver();
    /// @notice Equivocation evidence needs two headers at one height with one redraw index.
    error NotConflicting(uint64 heightA, uint32 redrawA, uint64 heightB, uint32 redrawB);
    /// @notice Equivocation evidence needs two different headers; both hash to `blockHash`.
    error SameHeader(bytes32 blockHash);
    /// @notice The two signatures of equivocation evidence are by different accounts.
    error DifferentSigners(address a, address b);

    // ──────────────────────────────────────────── events ─────────────────────────────────────────────

    /// @notice The signer set is now `signers` with threshold `threshold`; the next signed update must carry
    /// `nonce`. Emitted at genesis and after every change, so logs rebuild every set.
    event SignerSetChanged(uint256 indexed nonce, uint8 threshold, address[] signers);
    /// @notice `signer` signed two different headers at `height` with redraw index `redraw`; `removed` says
    /// whether it left the set (it stays when removal would leave fewer members than the threshold).
    event Equivocation(
        address indexed signer, uint64 height, uint32 redraw, bytes32 blockHashA, bytes32 blockHashB, bool removed
    );
    /// @notice The owner gave up its power over the signer set, for good.
    event BootstrapEnded();

    // ──────────────────────────────────────────── storage ────────────────────────────────────────────

    /// @notice The most signers a set may have (the bitmap in a proof is 32 bits).
    uint256 public constant MAX_SIGNERS = 32;
    /// @notice EIP-712 type of a block attestation.
    bytes32 public constant BLOCK_TYPEHASH = keccak256("Block(bytes32 blockHash)");
    /// @notice EIP-712 type of a signer set update.
    bytes32 public constant SIGNER_SET_UPDATE_TYPEHASH =
        keccak256("SignerSetUpdate(address[] signers,uint8 threshold,uint256 nonce)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("PoLChain");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: a larger s is the malleable twin of a valid signature (EIP-2).
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 private constant LOW_255_BITS = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    uint256 private constant LOW_160_BITS = 0x00ffffffffffffffffffffffffffffffffffffffff;

    /// @notice Whether this deployment attests by quorum (fixed at genesis).
    bool public immutable QUORUM;
    uint256 private immutable _CACHED_CHAIN_ID;
    bytes32 private immutable _CACHED_DOMAIN_SEPARATOR;

    /// @custom:storage-location erc7201:pol.storage.SignerQuorum
    struct QuorumStorage {
        address[] signers;
        uint8 threshold;
        uint64 nonce; // what the next signed update must carry; counts every change
        bool bootstrapOver;
    }

    /// @dev keccak256(abi.encode(uint256(keccak256("pol.storage.SignerQuorum")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant QUORUM_STORAGE = 0xe6d8545b1bef8251ffa3fd5946679dc4320a54b8449c1c74e57ea583710ac100;

    // ────────────────────────────────────────── constructor ──────────────────────────────────────────

    /// @param quorum Whether this deployment attests by quorum.
    constructor(bool quorum) {
        QUORUM = quorum;
        _CACHED_CHAIN_ID = block.chainid;
        _CACHED_DOMAIN_SEPARATOR = computeDomainSeparator(block.chainid, address(this));
    }

    // ───────────────────────────────────────────── logic ─────────────────────────────────────────────

    /// @notice Replace the signer set with the consent of t of the current members: each signs the EIP-712
    /// message SignerSetUpdate(signers, threshold, nonce) with the current nonce.
    /// @param signers The new members, strictly ascending.
    /// @param threshold The new t.
    /// @param nonce The current nonce (the third value of `signerSet()`); a used update cannot be replayed.
    /// @param signatures A quorum of the current set over the update (layout as in `submitBlockSigned`).
    function updateSignerSet(address[] calldata signers, uint8 threshold, uint256 nonce, bytes calldata signatures)
        external
    {
        if (!QUORUM) revert SingleAttesterMode();
        QuorumStorage storage $ = _quorumStorage();
        if (nonce != $.nonce) revert WrongNonce($.nonce, nonce);
        _verifyQuorum(_hashTypedData(_signerSetUpdateHash(signers, threshold, nonce)), signatures, _signerCommitment());
        _commitSignerSet(signers, threshold, false);
    }

    /// @notice Replace the signer set while the bootstrap phase lasts. Owner only.
    /// @param signers The new members, strictly ascending.
    /// @param threshold The new t.
    function setSignerSet(address[] calldata signers, uint8 threshold) external {
        _onlyOwner();
        if (!QUORUM) revert SingleAttesterMode();
        if (_quorumStorage().bootstrapOver) revert BootstrapOver();
        _commitSignerSet(signers, threshold, false);
    }

    /// @notice End the bootstrap phase for good: from now on only signed updates change the set. Owner only.
    function endBootstrap() external {
        _onlyOwner();
        if (!QUORUM) revert SingleAttesterMode();
        QuorumStorage storage $ = _quorumStorage();
        if ($.bootstrapOver) revert BootstrapOver();
        $.bootstrapOver = true;
        emit BootstrapEnded();
    }

    /// @notice The signer set, its threshold, and the nonce the next signed update must carry.
    function signerSet() external view returns (address[] memory signers, uint8 threshold, uint256 nonce) {
        QuorumStorage storage $ = _quorumStorage();
        return ($.signers, $.threshold, $.nonce);
    }

    /// @notice The 160-bit commitment to (t, signers) that submissions are checked against (0: single-attester
    /// mode).
    function signerSetCommitment() external view returns (uint160) {
        return QUORUM ? _signerCommitment() : 0;
    }

    /// @notice Whether `a` is a member of the signer set.
    /// @param a Any account.
    function isSigner(address a) external view returns (bool) {
        return _positionOf(_quorumStorage().signers, a) != type(uint256).max;
    }

    /// @notice Whether the owner may still change the signer set.
    function bootstrapActive() external view returns (bool) {
        return QUORUM && !_quorumStorage().bootstrapOver;
    }

    /// @notice The EIP-712 domain separator of this deployment on this chain.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == _CACHED_CHAIN_ID
            ? _CACHED_DOMAIN_SEPARATOR
            : computeDomainSeparator(block.chainid, address(this));
    }

    /// @notice The EIP-712 domain (EIP-5267): name "PoLChain", version "1", chain id and this contract.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "PoLChain", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice The digest a signer signs to attest the block with hash `blockHash` on this deployment.
    /// @param blockHash keccak256(abi.encode(header)).
    function blockDigest(bytes32 blockHash) external view returns (bytes32) {
        return _blockDigest(blockHash);
    }

    /// @notice The digest a signer signs to consent to a signer set update on this deployment.
    /// @param signers The new members.
    /// @param threshold The new t.
    /// @param nonce The nonce the update carries.
    function signerSetUpdateDigest(address[] calldata signers, uint8 threshold, uint256 nonce)
        external
        view
        returns (bytes32)
    {
        return _hashTypedData(_signerSetUpdateHash(signers, threshold, nonce));
    }

    /// @notice keccak256(abi.encode(EIP712Domain typehash, keccak256("PoLChain"), keccak256("1"), chainId,
    /// verifyingContract)).
    /// @param chainId A chain id.
    /// @param verifyingContract A contract address.
    function computeDomainSeparator(uint256 chainId, address verifyingContract) public pure returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chainId, verifyingContract));
    }

    /// @notice keccak256("\x19\x01" || domainSeparator || keccak256(abi.encode(BLOCK_TYPEHASH, blockHash))).
    /// @param domainSeparator A domain separator.
    /// @param blockHash A block hash.
    function computeBlockDigest(bytes32 domainSeparator, bytes32 blockHash) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator, _blockHash(blockHash)));
    }

    /// @notice The EIP-712 digest of SignerSetUpdate(signers, threshold, nonce) under `domainSeparator`.
    /// @param domainSeparator A domain separator.
    /// @param signers The members.
    /// @param threshold t.
    /// @param nonce The nonce.
    function computeSignerSetUpdateDigest(
        bytes32 domainSeparator,
        address[] calldata signers,
        uint8 threshold,
        uint256 nonce
    ) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator, _signerSetUpdateHash(signers, threshold, nonce)));
    }

    /// @notice The 160-bit commitment the chain keeps to a set: the low 160 bits of
    /// keccak256(abi.encode(uint256(threshold), signers)).
    /// @param signers The members.
    /// @param threshold t.
    function computeSignerSetCommitment(address[] memory signers, uint256 threshold) public pure returns (uint160) {
        return uint160(uint256(keccak256(abi.encode(threshold, signers))));
    }

    // ─────────────────────────────────────────── internals ───────────────────────────────────────────

    /// @dev Reverts unless `signatures` holds valid EIP-712 signatures over `digest` by at least t distinct
    /// members of the set committed to by `commitment`. Layout of `signatures`: threshold (1 byte) ||
    /// bitmap (4 bytes, bit i = member i signed) || for each member i in the set's ascending order, its
    /// signature r || yParity<<255 | s (64 bytes, EIP-2098) if bit i is set, else its address (20 bytes).
    /// The recovered signers and the listed members rebuild abi.encode(t, signers) in memory; its hash must
    /// be the commitment. Distinctness follows: the committed members are strictly ascending.
    /// On any failure `_diagnose` names the exact fault from the stored set (gas then does not matter).
    function _verifyQuorum(bytes32 digest, bytes calldata signatures, uint160 commitment) internal view {
        bool ok;
        assembly ("memory-safe") {
            let p := signatures.offset
            let end := add(p, signatures.length)
            let word := calldataload(p)
            let bitmap := and(shr(216, word), 0xffffffff)
            // [digest][v][r][s] for ecrecover, then the image of abi.encode(t, signers).
            let m := mload(0x40)
            mstore(m, digest)
            let list := add(m, 0x80)
            let out := add(list, 0x60)
            let malleable := 0
            let count := 0
            let i := 0
            for { p := add(p, 5) } lt(p, end) {
                i := add(i, 1)
                out := add(out, 0x20)
            } {
                switch and(shr(i, bitmap), 1)
                case 0 {
                    mstore(out, shr(96, calldataload(p)))
                    p := add(p, 20)
                }
                default {
                    let vs := calldataload(add(p, 0x20))
                    let sv := and(vs, LOW_255_BITS)
                    malleable := or(malleable, gt(sv, HALF_ORDER))
                    mstore(add(m, 0x20), add(27, shr(255, vs)))
                    mstore(add(m, 0x40), calldataload(p))
                    mstore(add(m, 0x60), sv)
                    mstore(out, 0) // ecrecover writes nothing for an invalid signature: address 0
                    pop(staticcall(gas(), 1, m, 0x80, out, 0x20))
                    p := add(p, 0x40)
                    count := add(count, 1)
                }
            }
            let t := byte(0, word)
            mstore(list, t)
            mstore(add(list, 0x20), 0x40)
            mstore(add(list, 0x40), i)
            // Well formed (the entries end exactly at the end, n <= 32, no bit beyond n), low s, t signed,
            // and the rebuilt set is the committed one.
            ok := and(and(eq(p, end), iszero(malleable)), and(iszero(gt(i, 32)), iszero(shr(i, bitmap))))
            ok := and(ok, iszero(lt(count, t)))
            ok := and(ok, eq(and(keccak256(list, add(0x60, shl(5, i))), LOW_160_BITS), and(commitment, LOW_160_BITS)))
        }
        if (!ok) _diagnose(digest, signatures);
    }

    /// @dev Always reverts, with the first fault of a refused proof, found against the stored set (which
    /// hashes to the commitment).
    function _diagnose(bytes32 digest, bytes calldata signatures) private view {
        if (signatures.length < 5) revert MalformedSignatures(signatures.length);
        uint256 t = uint8(signatures[0]);
        uint256 bitmap = uint32(bytes4(signatures[1:5]));
        QuorumStorage storage $ = _quorumStorage();
        address[] memory set = $.signers;
        if (t != $.threshold) revert WrongThreshold($.threshold, t);
        uint256 count;
        uint256 i;
        for (uint256 p = 5; p < signatures.length; ++i) {
            bool signed = (bitmap >> i) & 1 == 1;
            uint256 next = p + (signed ? 64 : 20);
            if (next > signatures.length || i >= MAX_SIGNERS) revert MalformedSignatures(signatures.length);
            if (i >= set.length) revert WrongSignerCount(set.length, i + 1);
            if (signed) {
                _checkSigner(digest, signatures[p:next], count++, set, i, bitmap);
            } else {
                address listed = address(bytes20(signatures[p:next]));
                if (listed != set[i]) revert NonSignerMismatch(i, set[i], listed);
            }
            p = next;
        }
        if (bitmap >> i != 0) revert MalformedSignatures(signatures.length);
        if (i != set.length) revert WrongSignerCount(set.length, i);
        if (count < t) revert TooFewSignatures(count, t);
        // Unreachable while the stored set hashes to the commitment, which every change keeps.
        assert(false);
    }

    /// @dev Signature number `index` must be by member `i`; otherwise names who it is by.
    function _checkSigner(
        bytes32 digest,
        bytes calldata signature,
        uint256 index,
        address[] memory set,
        uint256 i,
        uint256 bitmap
    ) private pure {
        address a = _recover(digest, bytes32(signature[0:32]), bytes32(signature[32:64]), index);
        if (a == set[i]) return;
        uint256 j = _positionOf(set, a);
        if (j == type(uint256).max) revert InvalidSigner(index, a);
        if (j < i && (bitmap >> j) & 1 == 1) revert DuplicateSigner(index, a);
        revert SignersNotAscending(index);
    }

    /// @dev ecrecover of a compact (EIP-2098) signature; refuses the malleable twin; 0 when invalid.
    function _recover(bytes32 digest, bytes32 r, bytes32 vs, uint256 index) internal pure returns (address) {
        uint256 s = uint256(vs) & LOW_255_BITS;
        if (s > HALF_ORDER) revert MalleableSignature(index);
        return ecrecover(digest, uint8(27 + (uint256(vs) >> 255)), r, bytes32(s));
    }

    /// @dev The signer of a 64-byte compact signature over `digest` (reverts if malformed or malleable).
    function _recoverCompact(bytes32 digest, bytes calldata signature, uint256 index) internal pure returns (address) {
        if (signature.length != 64) revert MalformedSignatures(signature.length);
        return _recover(digest, bytes32(signature[0:32]), bytes32(signature[32:64]), index);
    }

    /// @dev Validates and stores a new set and moves the commitment; every change after genesis bumps the
    /// nonce, so an update signed for an earlier set can never apply.
    function _commitSignerSet(address[] memory signers, uint256 threshold, bool genesis)
        internal
        returns (uint160 commitment)
    {
        uint256 n = signers.length;
        if (n == 0 || n > MAX_SIGNERS) revert SignerCountOutOfRange(n);
        if (threshold == 0 || threshold > n) revert ThresholdOutOfRange(threshold, n);
        // Strictly ascending from above zero: no member twice, no zero address (what ecrecover returns on failure).
        address prev;
        for (uint256 i; i < n; ++i) {
            if (signers[i] <= prev) revert SignerSetNotAscending(i);
            prev = signers[i];
        }
        QuorumStorage storage $ = _quorumStorage();
        $.signers = signers;
        $.threshold = uint8(threshold);
        uint64 nonce = $.nonce;
        if (!genesis) $.nonce = nonce = nonce + 1;
        commitment = computeSignerSetCommitment(signers, threshold);
        _setSignerCommitment(commitment);
        emit SignerSetChanged(nonce, uint8(threshold), signers);
    }

    /// @dev The member who signed both (different) block hashes; reverts unless it is one member.
    function _equivocator(bytes32 hashA, bytes32 hashB, bytes calldata signatureA, bytes calldata signatureB)
        internal
        view
        returns (address a)
    {
        if (hashA == hashB) revert SameHeader(hashA);
        a = _recoverCompact(_blockDigest(hashA), signatureA, 0);
        address b = _recoverCompact(_blockDigest(hashB), signatureB, 1);
        if (a != b) revert DifferentSigners(a, b);
        if (_positionOf(_quorumStorage().signers, a) == type(uint256).max) revert InvalidSigner(0, a);
    }

    /// @dev `signer` equivocated: it leaves the set unless that would leave fewer members than the threshold;
    /// then the evidence is only logged (the quorum lowers t or replaces the key by a signed update).
    function _processEquivocation(address signer, uint64 height, uint32 redraw, bytes32 hashA, bytes32 hashB)
        internal
    {
        QuorumStorage storage $ = _quorumStorage();
        address[] memory set = $.signers;
        bool removed = set.length > $.threshold;
        emit Equivocation(signer, height, redraw, hashA, hashB, removed);
        if (!removed) return;
        uint256 position = _positionOf(set, signer);
        address[] memory rest = new address[](set.length - 1);
        for (uint256 i; i < rest.length; ++i) rest[i] = set[i < position ? i : i + 1];
        _commitSignerSet(rest, $.threshold, false);
    }

    /// @dev The EIP-712 digest of Block(blockHash) under this deployment's domain. The hot path's copy of
    /// `_hashTypedData(_blockHash(blockHash))`, inlined: that composition costs 43 gas more per block.
    function _blockDigest(bytes32 blockHash) internal view returns (bytes32 digest) {
        bytes32 domain = DOMAIN_SEPARATOR();
        bytes32 typehash = BLOCK_TYPEHASH;
        assembly ("memory-safe") {
            mstore(0x00, typehash)
            mstore(0x20, blockHash)
            let structHash := keccak256(0x00, 0x40)
            let m := mload(0x40)
            mstore(m, 0x1901)
            mstore(add(m, 0x20), domain)
            mstore(add(m, 0x40), structHash)
            digest := keccak256(add(m, 0x1e), 0x42)
        }
    }

    function _hashTypedData(bytes32 structHash) internal view returns (bytes32 digest) {
        bytes32 domain = DOMAIN_SEPARATOR();
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 0x1901)
            mstore(add(m, 0x20), domain)
            mstore(add(m, 0x40), structHash)
            digest := keccak256(add(m, 0x1e), 0x42)
        }
    }

    function _blockHash(bytes32 blockHash) private pure returns (bytes32 h) {
        bytes32 typehash = BLOCK_TYPEHASH;
        assembly ("memory-safe") {
            mstore(0x00, typehash)
            mstore(0x20, blockHash)
            h := keccak256(0x00, 0x40)
        }
    }

    function _signerSetUpdateHash(address[] calldata signers, uint8 threshold, uint256 nonce)
        private
        pure
        returns (bytes32)
    {
        // EIP-712 encodes an array as the keccak256 of its elements' 32-byte encodings.
        return keccak256(abi.encode(SIGNER_SET_UPDATE_TYPEHASH, keccak256(abi.encodePacked(signers)), threshold, nonce));
    }

    function _positionOf(address[] memory set, address a) private pure returns (uint256) {
        for (uint256 i; i < set.length; ++i) {
            if (set[i] == a) return i;
        }
        return type(uint256).max;
    }

    function _quorumStorage() private pure returns (QuorumStorage storage $) {
        assembly {
            $.slot := QUORUM_STORAGE
        }
    }

    /// @dev The 160-bit commitment to the current set, where the inheriting contract keeps it.
    function _signerCommitment() internal view virtual returns (uint160);

    function _setSignerCommitment(uint160 commitment) internal virtual;

    function _onlyOwner() internal view virtual;
}
