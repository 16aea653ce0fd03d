// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../src/PoLChain.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @dev Shared set-up: a chain with digits-cnn-sized genesis under `rules()`, and helpers that build the
/// attester's arguments for a valid next block and the full header the contract hashes.
abstract contract PoLChainFixture is TestBase {
    PoLChain internal chain;
    address internal constant ATTESTER = address(0xA77E);
    address internal constant OWNER = address(0x0B0B);
    address internal constant MINER = address(0x1111);
    bytes32 internal constant TASK = keccak256("task");
    bytes32 internal constant W0 = keccak256("genesis weights");
    bytes32 internal constant DEPLOY_RANDAO = keccak256("deploy randao");
    uint32 internal constant G_CORRECT = 100;
    uint32 internal constant TOLERANCE = 5;
    uint32 internal constant TARGET = 10;
    uint32 internal constant HALF_LIFE = 40;
    uint32 internal constant REDRAW_AFTER = 60;
    uint256 internal constant T0 = 1_000_000;

    /// @dev The arguments of submitBlock.
    struct Sub {
        uint64 height;
        bytes32 weightsHash;
        bytes32 newWeightsHash;
        bytes32 segmentRoot;
        uint32[] indices;
        uint32 correctBefore;
        uint32 correctAfter;
        uint32 redraw;
        address miner;
    }

    function rules() internal pure virtual returns (PoLChain.Rules);

    function setUp() public virtual {
        vm.warp(T0);
        vm.prevrandao(DEPLOY_RANDAO);
        chain = new PoLChain(genesis());
    }

    function genesis() internal pure returns (PoLChain.Genesis memory) {
        return PoLChain.Genesis({
            taskSpecHash: TASK,
            weightsHash: W0,
            numParams: 3842,
            batchSize: 4,
            correct: G_CORRECT,
            rules: rules(),
            sabotageTolerance: TOLERANCE,
            difficulty: 4,
            minDifficulty: 1,
            maxDifficulty: 32,
            targetBlockTime: TARGET,
            halfLife: HALF_LIFE,
            redrawAfter: REDRAW_AFTER,
            attester: ATTESTER,
            owner: OWNER
        });
    }

    function isChainBound() internal pure returns (bool) {
        return rules() == PoLChain.Rules.ChainBound;
    }

    function nextSub(bytes32 newWeights, uint32 before, uint32 gain) internal view returns (Sub memory s) {
        uint32[] memory p = new uint32[](4);
        p[0] = 1;
        p[1] = 3;
        p[2] = 4;
        p[3] = 1436;
        s = Sub({
            height: chain.tipHeight() + 1,
            weightsHash: keccak256(abi.encode("w", newWeights)),
            newWeightsHash: newWeights,
            segmentRoot: isChainBound() ? keccak256(abi.encode("segment", newWeights)) : bytes32(0),
            indices: p,
            correctBefore: before,
            correctAfter: before + gain,
            redraw: 0,
            miner: MINER
        });
    }

    /// @dev The full header the contract builds for `s` on the current tip.
    function headerOf(Sub memory s) internal view returns (PoLChain.Header memory h) {
        h = PoLChain.Header({
            parent: chain.tipLink(),
            taskSpecHash: TASK,
            difficulty: chain.difficulty(),
            height: s.height,
            weightsHash: s.weightsHash,
            newWeightsHash: s.newWeightsHash,
            segmentRoot: s.segmentRoot,
            indices: s.indices,
            correctBefore: s.correctBefore,
            correctAfter: s.correctAfter,
            redraw: s.redraw,
            miner: s.miner
        });
    }

    function call(Sub memory s) internal returns (bytes32) {
        return chain.submitBlock(
            s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
            s.redraw, s.miner
        );
    }

    function submit(Sub memory s) internal returns (bytes32) {
        vm.prank(ATTESTER);
        return call(s);
    }

    function encoded(Sub memory s) internal pure returns (bytes memory) {
        return abi.encodeCall(
            PoLChain.submitBlock,
            (s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
                s.redraw, s.miner)
        );
    }

    function expectedLink(bytes32 blockHash, bytes32 randao) internal pure returns (bytes32) {
        return isChainBound() ? keccak256(abi.encode(blockHash, randao)) : blockHash;
    }

    /// @dev Extend the chain by `n` valid blocks, `secondsPerBlock` apart.
    function extend(uint256 n, uint256 secondsPerBlock) internal {
        for (uint256 i; i < n; ++i) {
            vm.warp(block.timestamp + secondsPerBlock);
            submit(nextSub(keccak256(abi.encode(i, chain.tipHeight())), chain.tipCorrect(), 1));
        }
    }

    function kRule(uint256 height, uint256 time) internal view returns (uint256) {
        return chain.computeDifficulty(4, 1, 32, TARGET, HALF_LIFE, T0, height, time);
    }
}

/// @dev Everything that holds under both rule sets, run once per rule set by the two contracts below.
abstract contract PoLChainCommonTest is PoLChainFixture {
    // ─── genesis ───

    function test_GenesisIsTip() public view {
        assertEq(chain.tipHeight(), 0, "height");
        assertEq(chain.latestModelHash(), W0, "model");
        assertEq(chain.tipLink(), expectedLink(chain.GENESIS_HASH(), DEPLOY_RANDAO), "link");
        assertEq(chain.difficulty(), 4, "k");
        assertEq(chain.tipTime(), T0, "time");
        assertEq(chain.GENESIS_TIME(), T0, "genesis time");
        assertEq(uint256(chain.RULES()), uint256(rules()), "rules");
        assertTrue(chain.isAttester(ATTESTER), "attester");
    }

    function testFuzz_GenesisLink(bytes32 randao) public {
        vm.prevrandao(randao);
        PoLChain c = new PoLChain(genesis());
        assertEq(c.tipLink(), expectedLink(c.GENESIS_HASH(), randao), "link");
    }

    function test_GenesisHashIsTheGenesisHeader() public view {
        PoLChain.Header memory g = PoLChain.Header({
            parent: bytes32(0),
            taskSpecHash: TASK,
            difficulty: 4,
            height: 0,
            weightsHash: W0,
            newWeightsHash: W0,
            segmentRoot: bytes32(0),
            indices: new uint32[](0),
            correctBefore: G_CORRECT,
            correctAfter: G_CORRECT,
            redraw: 0,
            miner: address(0)
        });
        assertEq(chain.GENESIS_HASH(), keccak256(abi.encode(g)), "genesis hash");
    }

    function testFuzz_GenesisHashIsTheGenesisHeader(bytes32 task, bytes32 w0, uint32 correct, uint8 k) public {
        correct = uint32(bound(correct, 0, type(uint24).max));
        k = uint8(bound(k, 1, 32));
        PoLChain.Genesis memory gen = genesis();
        (gen.taskSpecHash, gen.weightsHash, gen.correct, gen.difficulty) = (task, w0, correct, k);
        PoLChain c = new PoLChain(gen);
        PoLChain.Header memory g = PoLChain.Header({
            parent: bytes32(0),
            taskSpecHash: task,
            difficulty: k,
            height: 0,
            weightsHash: w0,
            newWeightsHash: w0,
            segmentRoot: bytes32(0),
            indices: new uint32[](0),
            correctBefore: correct,
            correctAfter: correct,
            redraw: 0,
            miner: address(0)
        });
        assertEq(c.GENESIS_HASH(), keccak256(abi.encode(g)), "genesis hash");
        assertEq(c.tipCorrect(), correct, "tip count");
    }

    function test_RevertWhen_GenesisDifficultyTooLarge() public {
        PoLChain.Genesis memory g = genesis();
        g.numParams = 10;
        g.maxDifficulty = 6; // 2k > |W|
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, 6, 10));
        new PoLChain(g);
    }

    function testFuzz_RevertWhen_GenesisDifficultyTooLarge(uint64 numParams, uint8 maxK) public {
        vm.assume(numParams >= 8 && maxK >= 4 && uint256(maxK) * 2 > numParams);
        PoLChain.Genesis memory g = genesis();
        g.numParams = numParams;
        g.maxDifficulty = maxK;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, maxK, numParams));
        new PoLChain(g);
    }

    function test_RevertWhen_GenesisHalfLifeZero() public {
        PoLChain.Genesis memory g = genesis();
        g.halfLife = 0;
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "targetBlockTime or halfLife is zero")
        );
        new PoLChain(g);
    }

    function testFuzz_RevertWhen_GenesisTimingZero(uint32 target, uint32 halfLife) public {
        vm.assume(target == 0 || halfLife == 0);
        PoLChain.Genesis memory g = genesis();
        g.targetBlockTime = target;
        g.halfLife = halfLife;
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "targetBlockTime or halfLife is zero")
        );
        new PoLChain(g);
    }

    // ─── extending the chain ───

    function test_SubmitExtendsTip() public {
        vm.warp(T0 + 7);
        vm.prevrandao(keccak256("r1"));
        Sub memory s = nextSub(keccak256("w1"), 99, 2);
        bytes32 expected = keccak256(abi.encode(headerOf(s)));
        bytes32 got = submit(s);
        assertEq(got, expected, "returned hash");
        assertEq(chain.tipLink(), expectedLink(expected, keccak256("r1")), "link");
        assertEq(chain.tipHeight(), 1, "height");
        assertEq(chain.latestModelHash(), keccak256("w1"), "model");
        assertEq(chain.tipCorrect(), 101, "correct");
        assertEq(chain.tipTime(), T0 + 7, "time");
    }

    function testFuzz_SubmitExtendsTip(bytes32 w1, uint32 gain, uint8 blocks, bytes32 randao) public {
        gain = uint32(bound(gain, 1, 1000));
        blocks = uint8(bound(blocks, 1, 12));
        uint32 before = G_CORRECT;
        for (uint256 i; i < blocks; ++i) {
            vm.prevrandao(keccak256(abi.encode(randao, i)));
            Sub memory s = nextSub(keccak256(abi.encode(w1, i)), before, gain);
            bytes32 want = keccak256(abi.encode(headerOf(s)));
            assertEq(submit(s), want, "hash");
            assertEq(chain.tipLink(), expectedLink(want, keccak256(abi.encode(randao, i))), "link");
            before = before + gain;
        }
        assertEq(chain.tipHeight(), blocks, "height");
        assertEq(chain.tipCorrect(), G_CORRECT + uint256(blocks) * gain, "correct");
        assertEq(chain.latestModelHash(), keccak256(abi.encode(w1, uint256(blocks) - 1)), "model");
    }

    /// @dev submitBlock hashes its calldata in assembly, not abi.encode(header): the two must agree for
    /// every block it accepts (any miner, P, counts, segment root), or the chain would record a hash no one
    /// else computes.
    function testFuzz_SubmitHashIsKeccakOfAbiEncode(
        bytes32 w1,
        bytes32 segmentRoot,
        uint32 before,
        uint32 gain,
        address miner,
        uint32[4] memory p
    ) public {
        // The lowest count each rule set accepts: the monotone tip, or the sabotage guard's tolerance.
        uint32 lo = isChainBound() ? G_CORRECT : G_CORRECT - TOLERANCE;
        before = uint32(bound(before, lo, type(uint24).max - 1));
        gain = uint32(bound(gain, 1, type(uint24).max - before));
        Sub memory s = nextSub(w1, before, gain);
        s.miner = miner;
        if (isChainBound()) {
            vm.assume(segmentRoot != bytes32(0)); // zero means "no segment": the paper rules' value
            s.segmentRoot = segmentRoot;
            // P strictly ascending, otherwise arbitrary.
            uint256 prev;
            for (uint256 i; i < 4; ++i) {
                prev = (i == 0 ? 0 : prev + 1) + (p[i] % (1 << 28));
                s.indices[i] = uint32(prev);
            }
        } else {
            for (uint256 i; i < 4; ++i) s.indices[i] = p[i]; // any order, repeats included: the verifier's rule
        }
        PoLChain.Header memory h = headerOf(s);
        assertEq(submit(s), keccak256(abi.encode(h)), "submitBlock's hash");
    }

    function test_SubmitHashIsKeccakOfAbiEncode() public {
        Sub memory s = nextSub(keccak256("w1"), G_CORRECT, 1);
        s.miner = address(type(uint160).max);
        s.indices[3] = type(uint32).max;
        PoLChain.Header memory h = headerOf(s);
        assertEq(submit(s), keccak256(abi.encode(h)), "submitBlock's hash");
    }

    function test_EmitsWholeHeaderAndRandao() public {
        vm.prevrandao(keccak256("r"));
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        PoLChain.Header memory h = headerOf(s);
        vm.expectEmit(true, false, false, true);
        emit PoLChain.BlockAttested(keccak256(abi.encode(h)), isChainBound() ? uint256(keccak256("r")) : 0, h);
        submit(s);
    }

    function testFuzz_EmitsWholeHeaderAndRandao(bytes32 w1, address miner, bytes32 randao) public {
        vm.prevrandao(randao);
        Sub memory s = nextSub(w1, 100, 1);
        s.miner = miner;
        PoLChain.Header memory h = headerOf(s);
        vm.expectEmit(true, false, false, true);
        emit PoLChain.BlockAttested(keccak256(abi.encode(h)), isChainBound() ? uint256(randao) : 0, h);
        submit(s);
    }

    // ─── reverts, each with its fuzz twin ───

    function test_RevertWhen_NotAttester() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        vm.prank(MINER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotAttester.selector, MINER));
        call(s);
    }

    function testFuzz_RevertWhen_NotAttester(address who) public {
        vm.assume(who != ATTESTER);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        vm.prank(who);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotAttester.selector, who));
        call(s);
    }

    function test_RevertWhen_DuplicateBlock() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        submit(s);
        // The same arguments again would record a second block on top of the first: the height refuses.
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 2, 1));
        submit(s);
    }

    function testFuzz_RevertWhen_DuplicateBlock(bytes32 w1, uint32 gain) public {
        gain = uint32(bound(gain, 1, 100));
        Sub memory s = nextSub(w1, 100, gain);
        submit(s);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 2, 1));
        submit(s);
    }

    function test_RevertWhen_WrongHeight() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.height = 2;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 1, 2));
        submit(s);
    }

    function testFuzz_RevertWhen_WrongHeight(uint64 height) public {
        vm.assume(height != 1);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.height = height;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 1, height));
        submit(s);
    }

    function test_RevertWhen_WrongBatchSize() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.indices = new uint32[](3);
        s.indices[1] = 1;
        s.indices[2] = 2;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongBatchSize.selector, 4, 3));
        submit(s);
    }

    function testFuzz_RevertWhen_WrongBatchSize(uint8 n) public {
        vm.assume(n != 4);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.indices = new uint32[](n);
        for (uint256 i; i < n; ++i) s.indices[i] = uint32(i);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongBatchSize.selector, 4, n));
        submit(s);
    }

    function test_RevertWhen_AccuracyNotImproved() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 0);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.AccuracyNotImproved.selector, 100, 100));
        submit(s);
    }

    function testFuzz_RevertWhen_AccuracyNotImproved(uint32 before, uint32 afterCount) public {
        before = uint32(bound(before, G_CORRECT, type(uint32).max));
        afterCount = uint32(bound(afterCount, 0, before));
        Sub memory s = nextSub(keccak256("w1"), before, 0);
        s.correctAfter = afterCount;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.AccuracyNotImproved.selector, before, afterCount));
        submit(s);
    }

    function test_RevertWhen_CountTooLarge() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 0);
        s.correctAfter = 1 << 24;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.CountTooLarge.selector, 1 << 24));
        submit(s);
    }

    function testFuzz_RevertWhen_CountTooLarge(uint32 afterCount) public {
        afterCount = uint32(bound(afterCount, uint256(type(uint24).max) + 1, type(uint32).max));
        Sub memory s = nextSub(keccak256("w1"), 100, 0);
        s.correctAfter = afterCount;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.CountTooLarge.selector, afterCount));
        submit(s);
    }

    function test_RevertWhen_NonCanonicalEncoding() public {
        bytes memory data = encoded(nextSub(keccak256("w1"), 100, 1));
        vm.prank(ATTESTER);
        (bool ok, bytes memory ret) = address(chain).call(bytes.concat(data, bytes32(0))); // trailing word
        assertTrue(!ok, "rejected");
        assertEq(ret, abi.encodeWithSelector(PoLChain.NonCanonicalEncoding.selector, data.length + 32), "error");
    }

    function testFuzz_RevertWhen_NonCanonicalEncoding(uint256 dirtyIndex, uint8 which) public {
        vm.assume(dirtyIndex > type(uint32).max);
        bytes memory data = encoded(nextSub(keccak256("w1"), 100, 1));
        uint256 offset = 4 + 32 * (10 + uint256(which % 4)); // one of the four index words
        assembly {
            mstore(add(add(data, 32), offset), dirtyIndex)
        }
        vm.prank(ATTESTER);
        (bool ok, bytes memory ret) = address(chain).call(data);
        assertTrue(!ok, "rejected");
        assertEq(ret, abi.encodeWithSelector(PoLChain.NonCanonicalEncoding.selector, data.length), "error");
    }

    function test_RevertWhen_ArrayOffsetNotCanonical() public {
        // The same arguments with the array moved one word later (a valid but non-canonical encoding):
        // the image would then not be abi.encode(header).
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        bytes memory data = encoded(s);
        bytes memory moved = new bytes(data.length + 32);
        for (uint256 i; i < 4 + 9 * 32; ++i) moved[i] = data[i];
        for (uint256 i = 4 + 9 * 32; i < data.length; ++i) moved[i + 32] = data[i];
        moved[4 + 4 * 32 + 31] = 0x40; // offset word of `indices`: 0x140 instead of 0x120
        moved[4 + 4 * 32 + 30] = 0x01;
        vm.prank(ATTESTER);
        (bool ok, bytes memory ret) = address(chain).call(moved);
        assertTrue(!ok, "rejected");
        assertEq(ret, abi.encodeWithSelector(PoLChain.NonCanonicalEncoding.selector, moved.length), "error");
    }

    function testFuzz_RevertWhen_ArrayOffsetNotCanonical(uint8 extraWords) public {
        extraWords = uint8(bound(extraWords, 1, 8));
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        bytes memory data = encoded(s);
        uint256 head = 4 + 9 * 32;
        bytes memory moved = new bytes(data.length + 32 * uint256(extraWords));
        for (uint256 i; i < head; ++i) moved[i] = data[i];
        for (uint256 i = head; i < data.length; ++i) moved[i + 32 * uint256(extraWords)] = data[i];
        uint256 offset = 0x120 + 32 * uint256(extraWords);
        assembly {
            mstore(add(add(moved, 32), add(4, mul(4, 32))), offset)
        }
        vm.prank(ATTESTER);
        (bool ok, bytes memory ret) = address(chain).call(moved);
        assertTrue(!ok, "rejected");
        assertEq(ret, abi.encodeWithSelector(PoLChain.NonCanonicalEncoding.selector, moved.length), "error");
    }

    // ─── difficulty: ASERT in whole bits ───

    function test_DifficultyRisesWhenFast() public {
        extend(8, 0); // 80 s ahead of schedule = 2 half-lives
        assertEq(chain.difficulty(), 6, "k up by two");
        assertEq(chain.difficulty(), kRule(8, T0), "the rule");
    }

    function test_DifficultyFallsWhenSlow() public {
        extend(2, 50); // 80 s behind after two blocks = 2 half-lives
        assertEq(chain.difficulty(), 2, "k down by two");
    }

    function test_DifficultyUnchangedOnSchedule() public {
        extend(5, TARGET);
        assertEq(chain.difficulty(), 4, "k unchanged");
    }

    function testFuzz_DifficultyFollowsTheRule(uint256 secondsPerBlock, uint8 blocks) public {
        secondsPerBlock = bound(secondsPerBlock, 0, 1000);
        blocks = uint8(bound(blocks, 1, 10));
        extend(blocks, secondsPerBlock);
        uint256 k = chain.difficulty();
        assertEq(k, kRule(blocks, block.timestamp), "next k from (tip height, tip time)");
        assertTrue(k >= chain.MIN_DIFFICULTY() && k <= chain.MAX_DIFFICULTY(), "within [min, max]");
        if (secondsPerBlock * 2 + 10 <= TARGET && blocks >= 8) assertTrue(k > 4, "fast chains raise k");
        if (secondsPerBlock >= TARGET + 60) assertTrue(k < 4, "slow chains lower k");
    }

    function test_BlockCarriesTheStoredDifficulty() public {
        extend(8, 0);
        Sub memory s = nextSub(keccak256("w"), chain.tipCorrect(), 1);
        PoLChain.Header memory h = headerOf(s);
        assertEq(h.difficulty, 6, "header k");
        assertEq(submit(s), keccak256(abi.encode(h)), "hashed with the stored k");
    }

    function testFuzz_BlockCarriesTheStoredDifficulty(uint8 blocks, uint256 secondsPerBlock) public {
        blocks = uint8(bound(blocks, 1, 10));
        extend(blocks, bound(secondsPerBlock, 0, 200));
        Sub memory s = nextSub(keccak256("w"), chain.tipCorrect(), 1);
        PoLChain.Header memory h = headerOf(s);
        assertEq(h.difficulty, kRule(blocks, chain.tipTime()), "header k is the rule's");
        assertEq(submit(s), keccak256(abi.encode(h)), "hashed with the stored k");
    }

    function testFuzz_RevertWhen_DifficultyRuleInputsOutOfRange(uint256 k0, uint256 height) public {
        vm.assume(k0 > 255 || height > type(uint64).max);
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "difficulty rule inputs out of range")
        );
        chain.computeDifficulty(k0, 0, 255, 10, 40, 0, height, 0);
    }

    // ─── attesters ───

    function test_OwnerRotatesAttester() public {
        address next = address(0xBEEF);
        vm.expectEmit(true, true, false, false);
        emit PoLChain.AttesterChanged(ATTESTER, next);
        vm.prank(OWNER);
        chain.setAttester(next);
        assertTrue(chain.isAttester(next) && !chain.isAttester(ATTESTER), "rotated");
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        vm.prank(ATTESTER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotAttester.selector, ATTESTER));
        call(s);
        vm.prank(next);
        call(s);
        assertEq(chain.tipHeight(), 1, "new attester extends");
    }

    function testFuzz_OwnerRotatesAttester(address next) public {
        vm.assume(next != address(0));
        vm.prank(OWNER);
        chain.setAttester(next);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        vm.prank(next);
        call(s);
        assertEq(chain.tipHeight(), 1, "rotated attester extends");
    }

    function test_RevertWhen_NotOwner() public {
        vm.prank(ATTESTER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, ATTESTER));
        chain.setAttester(ATTESTER);
    }

    function testFuzz_RevertWhen_NotOwner(address who) public {
        vm.assume(who != OWNER);
        vm.prank(who);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, who));
        chain.setAttester(who);
    }

    function test_RevertWhen_AttesterIsZero() public {
        vm.prank(OWNER);
        vm.expectRevert(PoLChain.ZeroAddress.selector);
        chain.setAttester(address(0));
    }

    // ─── requirements ───

    function test_NextRequirementsUseTipLink() public view {
        uint256[] memory a = chain.nextRequirements();
        uint256[] memory b = chain.computeRequirements(chain.tipLink(), 4, 3842);
        assertEq(a.length, 4, "k values");
        for (uint256 i; i < a.length; ++i) assertEq(a[i], b[i], "same derivation");
    }

    function testFuzz_RedrawRequirementsUseTheRedrawSeed(uint32 j) public view {
        uint256[] memory a = chain.redrawRequirements(j);
        bytes32 seed = j == 0 ? chain.tipLink() : keccak256(abi.encodePacked(chain.tipLink(), j));
        uint256[] memory b = chain.computeRequirements(seed, 4, 3842);
        for (uint256 i; i < a.length; ++i) assertEq(a[i], b[i], "seed(link, j)");
    }

    function testFuzz_RequirementsDistinctAndInRange(bytes32 seed, uint8 k, uint64 numParams) public view {
        numParams = uint64(bound(numParams, 2, 1 << 40));
        k = uint8(bound(k, 1, numParams / 2 < 255 ? numParams / 2 : 255));
        uint256[] memory r = chain.computeRequirements(seed, k, numParams);
        assertEq(r.length, k, "k values");
        for (uint256 i; i < r.length; ++i) {
            assertTrue(r[i] < 2 * uint256(numParams), "in [0, 2|W|)");
            for (uint256 j; j < i; ++j) assertTrue(r[i] / 2 != r[j] / 2, "one requirement per weight");
        }
    }

    function test_RevertWhen_RequirementsDifficultyZero() public {
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, 0, 3842));
        chain.computeRequirements(bytes32(0), 0, 3842);
    }

    function testFuzz_RevertWhen_RequirementsDifficultyOutOfRange(uint256 k, uint256 numParams) public {
        numParams = bound(numParams, 1, 1 << 40);
        vm.assume(k == 0 || k > 255 || 2 * k > numParams);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, k, numParams));
        chain.computeRequirements(bytes32(0), k, numParams);
    }
}

/// @dev The chain-bound rules: links with prevrandao, the monotone tip, ascending P, timed redraws.
contract PoLChainTest is PoLChainCommonTest {
    function rules() internal pure override returns (PoLChain.Rules) {
        return PoLChain.Rules.ChainBound;
    }

    function test_RevertWhen_GenesisRedrawAfterZero() public {
        PoLChain.Genesis memory g = genesis();
        g.redrawAfter = 0;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "redrawAfter is zero"));
        new PoLChain(g);
    }

    function testFuzz_GenesisRedrawAfterPositiveAccepted(uint32 redrawAfter) public {
        redrawAfter = uint32(bound(redrawAfter, 1, type(uint32).max));
        PoLChain.Genesis memory g = genesis();
        g.redrawAfter = redrawAfter;
        assertEq(new PoLChain(g).REDRAW_AFTER(), redrawAfter, "stored");
    }

    function test_LinkDependsOnPrevrandao() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        vm.prevrandao(keccak256("a"));
        bytes32 h = submit(s);
        bytes32 linkA = chain.tipLink();
        assertEq(linkA, keccak256(abi.encode(h, keccak256("a"))), "link a");
        assertTrue(linkA != h, "not the block hash");
    }

    function testFuzz_LinkDependsOnPrevrandao(bytes32 a, bytes32 b) public {
        vm.assume(a != b);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        vm.prevrandao(a);
        bytes32 h = submit(s);
        assertEq(chain.tipLink(), keccak256(abi.encode(h, a)), "link");
        assertTrue(chain.tipLink() != keccak256(abi.encode(h, b)), "another randao, another link");
        assertEq(chain.computeLink(h, uint256(a)), chain.tipLink(), "computeLink");
    }

    function test_MonotoneEqualTipAccepted() public {
        submit(nextSub(keccak256("w1"), G_CORRECT - 3, 3)); // W below the tip, W' back at it
        assertEq(chain.tipCorrect(), G_CORRECT, "tip kept");
    }

    function testFuzz_MonotoneAccepted(uint32 before, uint32 gain) public {
        before = uint32(bound(before, 0, 1_000_000));
        gain = uint32(bound(gain, 1, 1_000_000));
        vm.assume(before + gain >= G_CORRECT);
        submit(nextSub(keccak256("w1"), before, gain));
        assertEq(chain.tipCorrect(), before + gain, "accepted");
    }

    function test_RevertWhen_TipRegressed() public {
        Sub memory s = nextSub(keccak256("w1"), G_CORRECT - 5, 4); // a drift block: 95 -> 99 < 100
        vm.expectRevert(abi.encodeWithSelector(PoLChain.TipRegressed.selector, G_CORRECT, G_CORRECT - 1));
        submit(s);
    }

    function testFuzz_RevertWhen_TipRegressed(uint32 before, uint32 afterCount) public {
        afterCount = uint32(bound(afterCount, 1, G_CORRECT - 1));
        before = uint32(bound(before, 0, afterCount - 1));
        Sub memory s = nextSub(keccak256("w1"), before, afterCount - before);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.TipRegressed.selector, G_CORRECT, afterCount));
        submit(s);
    }

    function test_RevertWhen_IndicesNotAscending() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        (s.indices[1], s.indices[2]) = (s.indices[2], s.indices[1]);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.IndicesNotAscending.selector, 2));
        submit(s);
    }

    function testFuzz_RevertWhen_IndicesNotAscending(uint8 position, uint32 value) public {
        position = uint8(bound(position, 1, 3));
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.indices[position] = uint32(bound(value, 0, s.indices[position - 1])); // equal or below its predecessor
        vm.expectRevert(abi.encodeWithSelector(PoLChain.IndicesNotAscending.selector, position));
        submit(s);
    }

    function test_RedrawOpensAfterTheTimeout() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.redraw = 2;
        vm.warp(T0 + 2 * REDRAW_AFTER);
        assertEq(chain.redrawOpensAt(2), T0 + 2 * REDRAW_AFTER, "opens at");
        PoLChain.Header memory h = headerOf(s);
        assertEq(submit(s), keccak256(abi.encode(h)), "j is in the hashed header");
    }

    function testFuzz_RedrawOpensAfterTheTimeout(uint32 j, uint32 extra) public {
        j = uint32(bound(j, 1, 1000));
        vm.warp(T0 + uint256(j) * REDRAW_AFTER + bound(extra, 0, 1 days));
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.redraw = j;
        submit(s);
        assertEq(chain.tipHeight(), 1, "accepted");
    }

    function test_RevertWhen_RedrawTooEarly() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.redraw = 1;
        vm.warp(T0 + REDRAW_AFTER - 1);
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.RedrawTooEarly.selector, 1, T0 + REDRAW_AFTER, T0 + REDRAW_AFTER - 1)
        );
        submit(s);
    }

    function testFuzz_RevertWhen_RedrawTooEarly(uint32 j, uint256 elapsed) public {
        j = uint32(bound(j, 1, type(uint32).max));
        elapsed = bound(elapsed, 0, uint256(j) * REDRAW_AFTER - 1);
        vm.warp(T0 + elapsed);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.redraw = j;
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.RedrawTooEarly.selector, j, T0 + uint256(j) * REDRAW_AFTER, T0 + elapsed)
        );
        submit(s);
    }

    /// @dev Whole-transaction gas (forge snapshot --isolate) of the worst attested block under these rules:
    /// a non-zero miner address and segment root, and a redraw (the extra time check).
    function test_GasSubmitBlock() public {
        extend(3, TARGET);
        Sub memory s = nextSub(keccak256("plain"), chain.tipCorrect(), 1);
        s.miner = address(bytes20(keccak256("nonzero miner")));
        submit(s);
        vm.snapshotGasLastCall("submitBlock chain-bound");
        vm.warp(block.timestamp + REDRAW_AFTER);
        s = nextSub(keccak256("redrawn"), chain.tipCorrect(), 1);
        s.miner = address(bytes20(keccak256("nonzero miner")));
        s.redraw = 1;
        submit(s);
        vm.snapshotGasLastCall("submitBlock chain-bound with a redraw");
    }
}

/// @dev The paper rules: link = block hash, no segment, no redraw, the sabotage guard instead of a
/// monotone tip (so drift is possible, within the tolerance), and P in any order.
contract PoLChainPaperTest is PoLChainCommonTest {
    function rules() internal pure override returns (PoLChain.Rules) {
        return PoLChain.Rules.Paper;
    }

    function test_PaperLinkIsTheBlockHash() public {
        vm.prevrandao(keccak256("ignored"));
        bytes32 h = submit(nextSub(keccak256("w1"), 100, 1));
        assertEq(chain.tipLink(), h, "link = hash");
    }

    function testFuzz_PaperLinkIsTheBlockHash(bytes32 randao) public {
        vm.prevrandao(randao);
        bytes32 h = submit(nextSub(keccak256("w1"), 100, 1));
        assertEq(chain.tipLink(), h, "link = hash");
        assertEq(chain.computeLink(h, uint256(randao)), h, "computeLink");
    }

    function test_RevertWhen_PaperSegment() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.segmentRoot = keccak256("segment");
        vm.expectRevert(abi.encodeWithSelector(PoLChain.SegmentNotAllowed.selector, keccak256("segment")));
        submit(s);
    }

    function testFuzz_RevertWhen_PaperSegment(bytes32 root) public {
        vm.assume(root != bytes32(0));
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.segmentRoot = root;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.SegmentNotAllowed.selector, root));
        submit(s);
    }

    function test_RevertWhen_PaperRedraw() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.redraw = 1;
        vm.warp(T0 + 100 * REDRAW_AFTER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.RedrawNotAllowed.selector, 1));
        submit(s);
    }

    function testFuzz_RevertWhen_PaperRedraw(uint32 j) public {
        vm.assume(j != 0);
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.redraw = j;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.RedrawNotAllowed.selector, j));
        submit(s);
    }

    function test_RevertWhen_Sabotage() public {
        Sub memory s = nextSub(keccak256("w1"), G_CORRECT - TOLERANCE - 1, 50);
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.SabotageGuard.selector, G_CORRECT, G_CORRECT - TOLERANCE - 1, TOLERANCE)
        );
        submit(s);
    }

    function testFuzz_RevertWhen_Sabotage(uint32 before) public {
        before = uint32(bound(before, 0, G_CORRECT - TOLERANCE - 1));
        Sub memory s = nextSub(keccak256("w1"), before, 1000);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.SabotageGuard.selector, G_CORRECT, before, TOLERANCE));
        submit(s);
    }

    /// @dev The attack the chain-bound monotone rule closes: under the paper rules a block may leave the
    /// tip worse, by up to tolerance - 1 answers per block.
    function test_PaperAllowsDrift() public {
        submit(nextSub(keccak256("w1"), G_CORRECT - TOLERANCE, 1));
        assertEq(chain.tipCorrect(), G_CORRECT - TOLERANCE + 1, "tip regressed");
    }

    function testFuzz_PaperAllowsDrift(uint8 blocks) public {
        blocks = uint8(bound(blocks, 1, 10));
        for (uint256 i; i < blocks; ++i) {
            uint32 tipCount = chain.tipCorrect();
            submit(nextSub(keccak256(abi.encode(i)), tipCount - TOLERANCE, 1));
        }
        assertEq(chain.tipCorrect(), G_CORRECT - uint256(blocks) * (TOLERANCE - 1), "drifted every block");
    }

    function test_PaperAllowsAnyIndexOrder() public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        (s.indices[0], s.indices[3]) = (s.indices[3], s.indices[0]);
        submit(s);
        assertEq(chain.tipHeight(), 1, "accepted");
    }

    function testFuzz_PaperAllowsAnyIndexOrder(uint32 a, uint32 b) public {
        Sub memory s = nextSub(keccak256("w1"), 100, 1);
        s.indices[0] = a;
        s.indices[1] = b;
        submit(s);
        assertEq(chain.tipHeight(), 1, "accepted");
    }

    /// @dev Whole-transaction gas of the worst paper block: a non-zero miner address.
    function test_GasSubmitBlock() public {
        extend(3, TARGET);
        Sub memory s = nextSub(keccak256("plain"), chain.tipCorrect(), 1);
        s.miner = address(bytes20(keccak256("nonzero miner")));
        submit(s);
        vm.snapshotGasLastCall("submitBlock paper");
    }
}

/// @dev The golden vectors pytest checks, read from the same files.
contract PoLChainVectorsTest is PoLChainFixture {
    function rules() internal pure override returns (PoLChain.Rules) {
        return PoLChain.Rules.ChainBound;
    }

    function readVectors(string memory name) internal view returns (string memory) {
        return vm.readFile(string.concat(vm.projectRoot(), "/tests/vectors/", name));
    }

    function key(uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".cases[", vm.toString(i), "].", field);
    }

    function test_GoldenRequirements() public view {
        string memory json = readVectors("requirements.json");
        uint256 n = vm.parseJsonUint(json, ".count");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            bytes32 seed = vm.parseJsonBytes32(json, key(i, "seed"));
            uint256 k = vm.parseJsonUint(json, key(i, "k"));
            uint256 numParams = vm.parseJsonUint(json, key(i, "numParams"));
            uint256[] memory want = vm.parseJsonUintArray(json, key(i, "requirements"));
            uint256[] memory got = chain.computeRequirements(seed, k, numParams);
            assertEq(got.length, want.length, "length");
            for (uint256 j; j < want.length; ++j) assertEq(got[j], want[j], "requirement");
        }
    }

    function test_GoldenHeaderHashes() public view {
        string memory json = readVectors("headers.json");
        uint256 n = vm.parseJsonUint(json, ".count");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            uint256[] memory idx = vm.parseJsonUintArray(json, key(i, "indices"));
            uint32[] memory p = new uint32[](idx.length);
            for (uint256 j; j < idx.length; ++j) p[j] = uint32(idx[j]);
            PoLChain.Header memory h = PoLChain.Header({
                parent: vm.parseJsonBytes32(json, key(i, "parent")),
                taskSpecHash: vm.parseJsonBytes32(json, key(i, "taskSpecHash")),
                difficulty: uint8(vm.parseJsonUint(json, key(i, "difficulty"))),
                height: uint64(vm.parseJsonUint(json, key(i, "height"))),
                weightsHash: vm.parseJsonBytes32(json, key(i, "weightsHash")),
                newWeightsHash: vm.parseJsonBytes32(json, key(i, "newWeightsHash")),
                segmentRoot: vm.parseJsonBytes32(json, key(i, "segmentRoot")),
                indices: p,
                correctBefore: uint32(vm.parseJsonUint(json, key(i, "correctBefore"))),
                correctAfter: uint32(vm.parseJsonUint(json, key(i, "correctAfter"))),
                redraw: uint32(vm.parseJsonUint(json, key(i, "redraw"))),
                miner: vm.parseJsonAddress(json, key(i, "miner"))
            });
            bytes memory enc = vm.parseJsonBytes(json, key(i, "encoding"));
            assertEq(keccak256(abi.encode(h)), keccak256(enc), "abi.encode equals the Python encoding");
            assertEq(chain.hashHeader(h), vm.parseJsonBytes32(json, key(i, "hash")), "contract hash");
        }
    }

    function test_GoldenLinksAndSeeds() public view {
        string memory json = readVectors("links.json");
        uint256 n = vm.parseJsonUint(json, ".count");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            bytes32 link = vm.parseJsonBytes32(json, key(i, "link"));
            bytes32 blockHash = vm.parseJsonBytes32(json, key(i, "blockHash"));
            uint256 randao = uint256(vm.parseJsonBytes32(json, key(i, "randao")));
            assertEq(chain.computeLink(blockHash, randao), link, "link");
            uint256[] memory js = vm.parseJsonUintArray(json, key(i, "redraws"));
            for (uint256 j; j < js.length; ++j) {
                bytes32 want = vm.parseJsonBytes32(json, string.concat(key(i, "seeds"), "[", vm.toString(j), "]"));
                assertEq(chain.computeSeed(link, uint32(js[j])), want, "seed");
            }
        }
    }

    function test_GoldenDifficulty() public view {
        string memory json = readVectors("difficulty.json");
        uint256 n = vm.parseJsonUint(json, ".count");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            uint256 got = chain.computeDifficulty(
                vm.parseJsonUint(json, key(i, "initial")),
                vm.parseJsonUint(json, key(i, "minimum")),
                vm.parseJsonUint(json, key(i, "maximum")),
                vm.parseJsonUint(json, key(i, "targetBlockTime")),
                vm.parseJsonUint(json, key(i, "halfLife")),
                vm.parseJsonUint(json, key(i, "genesisTime")),
                vm.parseJsonUint(json, key(i, "tipHeight")),
                vm.parseJsonUint(json, key(i, "tipTime"))
            );
            assertEq(got, vm.parseJsonUint(json, key(i, "difficulty")), "k");
        }
    }

    function testFuzz_HashHeaderIsKeccakOfAbiEncode(bytes32 w1, uint32 before, uint32 gain, address miner) public view {
        Sub memory s = nextSub(w1, before, 0);
        s.correctAfter = gain;
        s.miner = miner;
        PoLChain.Header memory h = headerOf(s);
        assertEq(chain.hashHeader(h), keccak256(abi.encode(h)), "hash rule");
    }
}
