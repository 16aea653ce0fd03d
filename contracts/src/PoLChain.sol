// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PoLChain
/// @notice Records a Proof-of-Learning chain whose blocks are verified off chain (Directed Guiding
/// Gradients) and attested here, under one of two rule sets fixed at deployment: `Paper` (the paper's
/// Algorithm 2 plus a sabotage guard) or `ChainBound` (W replayed from the parent's W' and a committed
/// training segment, a monotone tip, R seeded by a link that mixes in randomness fixed at inclusion, and a
/// timed redraw of R). The contract builds each header from its own state and the attester's fields,
/// hashes it, and derives the next block's seed from it.
/// @dev The header layout, its hash, links, seeds, the requirement derivation and the difficulty rule are
/// specified in docs/PROTOCOL.md and pinned by tests/vectors/*.json, which both forge and pytest check.
contract PoLChain {
    // ───────────────────────────────────────────── types ─────────────────────────────────────────────

    /// @notice The rule set, fixed at deployment (the task spec hash pins the same choice off chain).
    enum Rules {
        Paper,
        ChainBound
    }

    /// @notice A block header; `keccak256(abi.encode(header))` is the block hash. The first three fields
    /// are the ones the contract supplies itself; the attester sends the rest (see `submitBlock`).
    struct Header {
        bytes32 parent; // the parent's link (Paper: the parent's block hash)
        bytes32 taskSpecHash;
        uint8 difficulty; // k
        uint64 height;
        bytes32 weightsHash; // W, before the verified step (ChainBound: replayed from the parent's W')
        bytes32 newWeightsHash; // W', the verifier's canonical recomputation
        bytes32 segmentRoot; // ChainBound: keccak256 of the segment's encoding; Paper: zero
        uint32[] indices; // P (ChainBound: strictly ascending)
        uint32 correctBefore;
        uint32 correctAfter;
        uint32 redraw; // j: which draw of R the block meets
        address miner;
    }

    /// @notice Everything fixed at genesis.
    struct Genesis {
        bytes32 taskSpecHash;
        bytes32 weightsHash;
        uint64 numParams; // |W|
        uint32 batchSize; // S
        uint32 correct; // correct test predictions of the genesis weights
        Rules rules;
        uint32 sabotageTolerance; // Paper only
        uint8 difficulty; // k0, the genesis k and the difficulty rule's anchor
        uint8 minDifficulty;
        uint8 maxDifficulty;
        uint32 targetBlockTime; // seconds
        uint32 halfLife; // seconds of schedule drift per bit of k
        uint32 redrawAfter; // ChainBound: seconds after the tip before each further redraw index opens
        address attester;
        address owner;
    }

    // ──────────────────────────────────────────── errors ─────────────────────────────────────────────

    /// @notice The header's height is not tip height + 1 (so it does not extend the tip).
    error WrongHeight(uint64 expected, uint64 got);
    /// @notice The caller may not attest blocks.
    error NotAttester(address who);
    /// @notice The caller is not the owner.
    error NotOwner(address who);
    /// @notice P does not hold exactly S indices.
    error WrongBatchSize(uint256 expected, uint256 got);
    /// @notice accuracy(W', E) must exceed accuracy(W, E).
    error AccuracyNotImproved(uint32 correctBefore, uint32 correctAfter);
    /// @notice Paper: W scores more than the tolerance below the parent's W'.
    error SabotageGuard(uint32 parentCorrect, uint32 correctBefore, uint32 tolerance);
    /// @notice ChainBound: the block would leave the tip with fewer correct answers than its parent.
    error TipRegressed(uint32 tipCorrect, uint32 correctAfter);
    /// @notice ChainBound: P is not strictly ascending at `position`.
    error IndicesNotAscending(uint256 position);
    /// @notice Paper: a header carries no segment, so its root must be zero.
    error SegmentNotAllowed(bytes32 segmentRoot);
    /// @notice Paper: R is never redrawn.
    error RedrawNotAllowed(uint32 redraw);
    /// @notice ChainBound: redraw index `redraw` opens only at `opensAt`.
    error RedrawTooEarly(uint32 redraw, uint256 opensAt, uint256 timestamp);
    /// @notice k is outside [1, 255] or more than half of |W|.
    error InvalidDifficulty(uint256 k, uint256 numParams);
    /// @notice A genesis parameter is unusable.
    error InvalidGenesis(string reason);
    /// @notice The zero address was given where an account is needed.
    error ZeroAddress();
    /// @notice The calldata is not the canonical ABI encoding of submitBlock's arguments.
    error NonCanonicalEncoding(uint256 calldataLength);
    /// @notice A correct count does not fit the 24 bits the tip stores.
    error CountTooLarge(uint256 count);

    // ──────────────────────────────────────────── events ─────────────────────────────────────────────

    /// @notice A block was recorded. `header` is the full header whose abi.encode the hash is over;
    /// `randao` is the block.prevrandao mixed into its link (ChainBound; zero under Paper, where the link
    /// is the block hash), so logs alone rebuild every block, hash and link.
    event BlockAttested(bytes32 indexed blockHash, uint256 randao, Header header);
    /// @notice The attester changed from `previous` to `attester`.
    event AttesterChanged(address indexed previous, address indexed attester);
    /// @notice Ownership moved.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    // ──────────────────────────────────────────── storage ────────────────────────────────────────────

    /// @notice Link of the tip block: the next header's `parent`, and the seed of its requirements.
    /// ChainBound: keccak256(tipBlockHash || prevrandao of its inclusion); Paper: the tip's block hash.
    bytes32 public tipLink;
    /// @notice Hash of W' at the tip: the model everyone trains next.
    bytes32 public latestModelHash;

    /// @dev Everything a submission reads besides the two hashes, in one slot (one cold access):
    /// [authority 160 | height 32 | tip correct 24 | next k 8 | tip time 32]. A t-of-n quorum replaces
    /// the attester address with a commitment to its signer set, in the same 160 bits.
    struct Tip {
        address attester; // the one account that may send submitBlock
        uint32 height;
        uint24 correct; // correctAfter of the tip
        uint8 difficulty; // k of the next block, from the difficulty rule at the tip
        uint32 time; // timestamp at which the tip was recorded
    }

    Tip internal _tip;

    /// @notice The account that manages the attester.
    address public owner;

    /// @notice The task every block is about (model, data, S, lr, margins, rule set, segment bounds).
    bytes32 public immutable TASK_SPEC_HASH;
    /// @notice Hash of the genesis header (height 0).
    bytes32 public immutable GENESIS_HASH;
    /// @notice |W|: the requirement index space is [0, 2|W|).
    uint256 public immutable NUM_PARAMS;
    /// @notice S: the number of indices in P.
    uint256 public immutable BATCH_SIZE;
    /// @notice The rule set this chain enforces.
    Rules public immutable RULES;
    /// @notice Paper rules: how many correct answers W may be below the tip.
    uint32 public immutable SABOTAGE_TOLERANCE;
    /// @notice k0: the genesis k, and the difficulty rule's anchor.
    uint8 public immutable INITIAL_DIFFICULTY;
    /// @notice The least k the difficulty rule may set.
    uint8 public immutable MIN_DIFFICULTY;
    /// @notice The greatest k the difficulty rule may set.
    uint8 public immutable MAX_DIFFICULTY;
    /// @notice T: the target seconds between blocks.
    uint32 public immutable TARGET_BLOCK_TIME;
    /// @notice tau: seconds of schedule drift per bit of k.
    uint32 public immutable HALF_LIFE;
    /// @notice Chain-bound rules: seconds after the tip before each further redraw index opens.
    uint32 public immutable REDRAW_AFTER;
    /// @notice t0: the timestamp of the deployment, the difficulty rule's time anchor.
    uint32 public immutable GENESIS_TIME;

    /// @dev Calldata of submitBlock: selector, nine head words (height, W, W', segment root, offset of
    /// `indices` = 0x120, correctBefore, correctAfter, redraw, miner), then the array's length (at 0x124)
    /// and S words (from 0x144). The image copies all of it after its first four words.
    uint256 private constant HEAD_WORDS = 9;
    /// @dev abi.encode(Header) has twelve head words; `indices` sits after them.
    uint256 private constant HEADER_HEAD_WORDS = 12;

    // ────────────────────────────────────────── constructor ──────────────────────────────────────────

    /// @param g The genesis parameters; the genesis block (height 0) is recorded at once.
    constructor(Genesis memory g) {
        if (g.attester == address(0) || g.owner == address(0)) revert ZeroAddress();
        if (g.batchSize == 0) revert InvalidGenesis("batchSize is zero");
        if (g.targetBlockTime == 0 || g.halfLife == 0) revert InvalidGenesis("targetBlockTime or halfLife is zero");
        // With no delay every redraw index would be open at once: a free choice among many R.
        if (g.rules == Rules.ChainBound && g.redrawAfter == 0) revert InvalidGenesis("redrawAfter is zero");
        if (g.minDifficulty > g.difficulty || g.difficulty > g.maxDifficulty) {
            revert InvalidGenesis("difficulty outside [min, max]");
        }
        if (g.correct > type(uint24).max) revert CountTooLarge(g.correct);
        if (block.timestamp > type(uint32).max) revert InvalidGenesis("timestamp does not fit uint32");
        _checkDifficulty(g.minDifficulty, g.numParams);
        _checkDifficulty(g.maxDifficulty, g.numParams);

        TASK_SPEC_HASH = g.taskSpecHash;
        NUM_PARAMS = g.numParams;
        BATCH_SIZE = g.batchSize;
        RULES = g.rules;
        SABOTAGE_TOLERANCE = g.sabotageTolerance;
        INITIAL_DIFFICULTY = g.difficulty;
        MIN_DIFFICULTY = g.minDifficulty;
        MAX_DIFFICULTY = g.maxDifficulty;
        TARGET_BLOCK_TIME = g.targetBlockTime;
        HALF_LIFE = g.halfLife;
        REDRAW_AFTER = g.redrawAfter;
        GENESIS_TIME = uint32(block.timestamp);

        Header memory genesis = Header({
            parent: bytes32(0),
            taskSpecHash: g.taskSpecHash,
            difficulty: g.difficulty,
            height: 0,
            weightsHash: g.weightsHash,
            newWeightsHash: g.weightsHash,
            segmentRoot: bytes32(0),
            indices: new uint32[](0),
            correctBefore: g.correct,
            correctAfter: g.correct,
            redraw: 0,
            miner: address(0)
        });
        bytes32 genesisHash = keccak256(abi.encode(genesis));
        uint256 randao = g.rules == Rules.ChainBound ? block.prevrandao : 0;
        GENESIS_HASH = genesisHash;
        tipLink = g.rules == Rules.ChainBound ? keccak256(abi.encode(genesisHash, randao)) : genesisHash;
        latestModelHash = g.weightsHash;
        _tip = Tip({
            attester: g.attester,
            height: 0,
            correct: uint24(g.correct),
            difficulty: g.difficulty,
            time: uint32(block.timestamp)
        });
        owner = g.owner;
        emit OwnershipTransferred(address(0), g.owner);
        emit AttesterChanged(address(0), g.attester);
        emit BlockAttested(genesisHash, randao, genesis);
    }

    // ───────────────────────────────────────────── logic ─────────────────────────────────────────────

    /// @notice Record a verified block on top of the tip. Only the attester may call it. The contract
    /// supplies `parent` (the tip's link), `taskSpecHash` and `difficulty` itself; the block hash is
    /// keccak256(abi.encode(header)) of the full header, exactly as off chain.
    /// @param height Tip height + 1: binds the block to the one tip it was verified against.
    /// @param weightsHash W.
    /// @param newWeightsHash W'.
    /// @param segmentRoot ChainBound: the segment's root; Paper: zero.
    /// @param indices P: exactly S indices (ChainBound: strictly ascending).
    /// @param correctBefore accuracy(W, E) as a count.
    /// @param correctAfter accuracy(W', E) as a count.
    /// @param redraw j: 0, or (ChainBound) a redraw index that has opened.
    /// @param miner The account credited with the block.
    /// @return blockHash The new block's hash.
    function submitBlock(
        uint64 height,
        bytes32 weightsHash,
        bytes32 newWeightsHash,
        bytes32 segmentRoot,
        uint32[] calldata indices,
        uint32 correctBefore,
        uint32 correctAfter,
        uint32 redraw,
        address miner
    ) external returns (bytes32 blockHash) {
        Tip memory t = _tip;
        if (msg.sender != t.attester) revert NotAttester(msg.sender);
        bool chainBound = RULES == Rules.ChainBound;
        {
            // The header image is built from the calldata words themselves, so they must be the canonical
            // encoding. The ABI decoder has already refused dirty high bits in the static arguments;
            // left to check: the array right after the head, S clean index words, no trailing bytes.
            uint256 dirty;
            uint256 descents; // any index not above its predecessor
            assembly ("memory-safe") {
                dirty := xor(indices.offset, 0x144)
                let prev := calldataload(0x144)
                dirty := or(dirty, shr(32, prev))
                for { let p := 0x164 } lt(p, calldatasize()) { p := add(p, 0x20) } {
                    let v := calldataload(p)
                    dirty := or(dirty, shr(32, v))
                    descents := or(descents, iszero(gt(v, prev)))
                    prev := v
                }
            }
            if (dirty != 0) revert NonCanonicalEncoding(msg.data.length);
            if (indices.length != BATCH_SIZE) revert WrongBatchSize(BATCH_SIZE, indices.length);
            if (msg.data.length != 4 + (HEAD_WORDS + 1 + BATCH_SIZE) * 32) revert NonCanonicalEncoding(msg.data.length);
            // ChainBound: canonical order, so that a permutation of P is not a second block.
            if (chainBound && descents != 0) revert IndicesNotAscending(_firstDescent(indices));
        }
        // The height binds the block to the tip it was verified against: a stale or repeated header
        // names a height that is no longer tip + 1, and heights only grow.
        if (height != uint256(t.height) + 1) revert WrongHeight(uint64(t.height) + 1, height);
        // Algorithm 2: the verified step must improve accuracy.
        if (correctAfter <= correctBefore) revert AccuracyNotImproved(correctBefore, correctAfter);
        if (correctAfter > type(uint24).max) revert CountTooLarge(correctAfter);
        if (chainBound) {
            // Monotone tip: no block leaves the chain's model worse than its parent's.
            if (correctAfter < t.correct) revert TipRegressed(t.correct, correctAfter);
            // A redraw is a liveness escape, so each index opens only after its timeout.
            if (redraw != 0 && block.timestamp < uint256(t.time) + uint256(redraw) * REDRAW_AFTER) {
                revert RedrawTooEarly(redraw, uint256(t.time) + uint256(redraw) * REDRAW_AFTER, block.timestamp);
            }
        } else {
            if (segmentRoot != bytes32(0)) revert SegmentNotAllowed(segmentRoot);
            if (redraw != 0) revert RedrawNotAllowed(redraw);
            // W is free under these rules; it may be at most the tolerance worse than the tip.
            if (uint256(correctBefore) + SABOTAGE_TOLERANCE < t.correct) {
                revert SabotageGuard(t.correct, correctBefore, SABOTAGE_TOLERANCE);
            }
        }

        blockHash = _record(t.difficulty, chainBound);
        latestModelHash = newWeightsHash;
        t.height = uint32(height);
        t.correct = uint24(correctAfter);
        t.time = uint32(block.timestamp);
        t.difficulty = _difficulty(height, block.timestamp);
        _tip = t;
    }

    /// @dev Builds abi.encode(header) in memory from the tip's link, the task, k and submitBlock's
    /// calldata, hashes it, stores the new tip link, and emits BlockAttested from the same bytes.
    /// Image: [randao][0x20][parent link][task][k][height, W, W', root, offset, cb, ca, j, miner, S, P...].
    function _record(uint256 k, bool chainBound) internal returns (bytes32 blockHash) {
        bytes32 parent = tipLink;
        bytes32 task = TASK_SPEC_HASH;
        uint256 imageLength = (HEADER_HEAD_WORDS + 2 + BATCH_SIZE) * 32;
        uint256 randao = chainBound ? block.prevrandao : 0;
        bytes32 link;
        bytes32 topic0 = BlockAttested.selector;
        assembly ("memory-safe") {
            let base := mload(0x40)
            let img := add(base, 0x20)
            mstore(img, 0x20)
            mstore(add(img, 0x20), parent)
            mstore(add(img, 0x40), task)
            mstore(add(img, 0x60), k)
            calldatacopy(add(img, 0x80), 0x04, sub(calldatasize(), 0x04))
            mstore(add(img, 0x100), 0x180) // the array's offset inside abi.encode(header)
            blockHash := keccak256(img, imageLength)
            link := blockHash
            if chainBound {
                mstore(0x00, blockHash)
                mstore(0x20, randao)
                link := keccak256(0x00, 0x40)
            }
            // The event's data is [randao][offset 0x40][the header's tuple]: the image, first word changed.
            mstore(base, randao)
            mstore(img, 0x40)
            log2(base, add(imageLength, 0x20), topic0, blockHash)
        }
        tipLink = link;
    }

    /// @notice The difficulty rule (ASERT in whole bits, anchored at genesis): the k of the block after a
    /// tip at `tipHeight` recorded at `tipTime`. drift = tipHeight * T - (tipTime - t0);
    /// k = clamp(k0 + floor((2 drift + tau) / (2 tau)), kMin, kMax).
    /// @param initialK k0.
    /// @param minK kMin.
    /// @param maxK kMax.
    /// @param targetBlockTime T, seconds.
    /// @param halfLife tau, seconds per bit.
    /// @param genesisTime t0.
    /// @param height Height of the tip.
    /// @param timestamp Timestamp of the tip.
    /// @return k The next block's difficulty.
    function computeDifficulty(
        uint256 initialK,
        uint256 minK,
        uint256 maxK,
        uint256 targetBlockTime,
        uint256 halfLife,
        uint256 genesisTime,
        uint256 height,
        uint256 timestamp
    ) public pure returns (uint8 k) {
        // The integer arithmetic below is exact for inputs below 2^64 (the chain stores 32-bit values).
        uint256 bound = type(uint64).max;
        if (
            initialK > 255 || minK > initialK || maxK < initialK || maxK > 255 || halfLife == 0 || targetBlockTime > bound
                || halfLife > bound || genesisTime > bound || height > bound || timestamp > bound
        ) revert InvalidGenesis("difficulty rule inputs out of range");
        return _asert(initialK, minK, maxK, targetBlockTime, halfLife, genesisTime, height, timestamp);
    }

    /// @notice The k of the block after a tip at (`height`, `timestamp`) under this chain's parameters.
    /// @param height Height of the tip.
    /// @param timestamp Timestamp of the tip.
    function difficultyAt(uint256 height, uint256 timestamp) external view returns (uint8) {
        return computeDifficulty(
            INITIAL_DIFFICULTY, MIN_DIFFICULTY, MAX_DIFFICULTY, TARGET_BLOCK_TIME, HALF_LIFE, GENESIS_TIME, height, timestamp
        );
    }

    /// @notice The requirements R for a block on a parent with hash `seed`, at the current difficulty.
    /// @param seed A seed: seed(link, j).
    /// @return r k values in [0, 2|W|): weight r/2 must decrease when r is odd, increase when even.
    function requirements(bytes32 seed) external view returns (uint256[] memory r) {
        return computeRequirements(seed, _tip.difficulty, NUM_PARAMS);
    }

    /// @notice The requirements the next block must meet without a redraw: seeded by the tip's link.
    /// @return r As in `requirements(tipLink)`.
    function nextRequirements() external view returns (uint256[] memory r) {
        return computeRequirements(tipLink, _tip.difficulty, NUM_PARAMS);
    }

    /// @notice The requirements of the next block under redraw index `j` (whether or not it has opened).
    /// @param j The redraw index.
    /// @return r As in `requirements(computeSeed(tipLink, j))`.
    function redrawRequirements(uint32 j) external view returns (uint256[] memory r) {
        return computeRequirements(computeSeed(tipLink, j), _tip.difficulty, NUM_PARAMS);
    }

    /// @notice The earliest timestamp at which the next block may use redraw index `j` (ChainBound).
    /// @param j The redraw index.
    function redrawOpensAt(uint32 j) external view returns (uint256) {
        return uint256(_tip.time) + uint256(j) * REDRAW_AFTER;
    }

    /// @notice seed(link, j) = link for j = 0, else keccak256(abi.encodePacked(link, uint32(j))).
    /// @param link A block's link.
    /// @param j The redraw index.
    function computeSeed(bytes32 link, uint32 j) public pure returns (bytes32) {
        return j == 0 ? link : keccak256(abi.encodePacked(link, j));
    }

    /// @notice link = keccak256(blockHash || randao) under ChainBound rules, blockHash under Paper.
    /// @param blockHash A block hash.
    /// @param randao The prevrandao of the block that recorded it.
    function computeLink(bytes32 blockHash, uint256 randao) external view returns (bytes32) {
        return RULES == Rules.ChainBound ? keccak256(abi.encode(blockHash, randao)) : blockHash;
    }

    /// @notice r_i = keccak256(abi.encodePacked(seed, uint32(counter))) mod 2|W|, skipping any r
    /// whose weight r/2 is already required (collision avoidance), until k are drawn.
    /// @param seed seed(link, j).
    /// @param k The difficulty.
    /// @param numParams |W|.
    /// @return r The k requirements in draw order.
    function computeRequirements(bytes32 seed, uint256 k, uint256 numParams)
        public
        pure
        returns (uint256[] memory r)
    {
        _checkDifficulty(k, numParams);
        r = new uint256[](k);
        uint256 modulus = 2 * numParams;
        uint256 found;
        for (uint32 counter; found < k; ++counter) {
            uint256 candidate = uint256(keccak256(abi.encodePacked(seed, counter))) % modulus;
            bool taken;
            for (uint256 j; j < found; ++j) {
                if (r[j] / 2 == candidate / 2) {
                    taken = true;
                    break;
                }
            }
            if (!taken) r[found++] = candidate;
        }
    }

    /// @notice Height of the tip.
    function tipHeight() external view returns (uint64) {
        return _tip.height;
    }

    /// @notice The k the next block must carry.
    function difficulty() external view returns (uint8) {
        return _tip.difficulty;
    }

    /// @notice Correct test predictions of the tip's W'.
    function tipCorrect() external view returns (uint32) {
        return _tip.correct;
    }

    /// @notice Timestamp at which the tip was recorded.
    function tipTime() external view returns (uint32) {
        return _tip.time;
    }

    /// @notice The account that may attest blocks.
    function attester() external view returns (address) {
        return _tip.attester;
    }

    /// @notice Whether `a` may attest blocks.
    /// @param a Any account.
    function isAttester(address a) external view returns (bool) {
        return a == _tip.attester;
    }

    /// @notice Tip link, height, W' hash, next k and tip time in one call.
    function tip() external view returns (bytes32 link, uint64 height, bytes32 modelHash, uint8 k, uint32 time) {
        Tip memory t = _tip;
        return (tipLink, t.height, latestModelHash, t.difficulty, t.time);
    }

    /// @notice The block hash of `h`: keccak256(abi.encode(h)).
    /// @param h A header.
    function hashHeader(Header calldata h) external pure returns (bytes32) {
        return keccak256(abi.encode(h));
    }

    /// @notice Rotate the attester to `a`. Owner only.
    /// @param a The new attester.
    function setAttester(address a) external {
        _onlyOwner();
        if (a == address(0)) revert ZeroAddress();
        emit AttesterChanged(_tip.attester, a);
        _tip.attester = a;
    }

    /// @notice Hand ownership to `newOwner`. Owner only.
    /// @param newOwner The next owner.
    function transferOwnership(address newOwner) external {
        _onlyOwner();
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function _difficulty(uint256 height, uint256 time) internal view returns (uint8) {
        return _asert(
            INITIAL_DIFFICULTY, MIN_DIFFICULTY, MAX_DIFFICULTY, TARGET_BLOCK_TIME, HALF_LIFE, GENESIS_TIME, height, time
        );
    }

    /// @dev Inputs below 2^64 (checked by the callers, or 32-bit by storage), so every intermediate fits
    /// int256: |2 drift + tau| < 2^130.
    function _asert(
        uint256 k0,
        uint256 minK,
        uint256 maxK,
        uint256 targetBlockTime,
        uint256 halfLife,
        uint256 genesisTime,
        uint256 height,
        uint256 timestamp
    ) internal pure returns (uint8) {
        unchecked {
            int256 drift = int256(height * targetBlockTime) - (int256(timestamp) - int256(genesisTime));
            int256 n = 2 * drift + int256(halfLife);
            int256 d = 2 * int256(halfLife);
            int256 q = n >= 0 ? n / d : -((-n + d - 1) / d); // floor division
            int256 k = int256(k0) + q;
            if (k < int256(minK)) return uint8(minK);
            if (k > int256(maxK)) return uint8(maxK);
            return uint8(uint256(k));
        }
    }

    function _firstDescent(uint32[] calldata p) internal pure returns (uint256 position) {
        for (position = 1; position < p.length; ++position) {
            if (p[position] <= p[position - 1]) return position;
        }
    }

    function _onlyOwner() internal view {
        if (msg.sender != owner) revert NotOwner(msg.sender);
    }

    function _checkDifficulty(uint256 k, uint256 numParams) internal pure {
        if (k == 0 || k > 255 || 2 * k > numParams) revert InvalidDifficulty(k, numParams);
    }
}
